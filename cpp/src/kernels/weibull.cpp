// The Weibull distribution, shape alpha, scale sigma, z = y / sigma, t = z^alpha = exp(alpha log z):
//   weibull(y | shape, scale)       = log(alpha) - log(sigma) + (alpha - 1) log(z) - t
//   weibull_lccdf(y | shape, scale) = log P(Y > y) = -t
//   weibull_lcdf(y | shape, scale)  = log P(Y <= y) = log(1 - exp(-t)), as log1m_exp (special::Log1mExpNeg);
//     where t underflows (alpha log z < -30) it is alpha log z - t / 2 (log(1 - e^-t) = log t - t/2 + O(t^2)),
//     finite where log(1 - exp(-t)) would be -inf.
// Partials of lcdf: d/dt log(1 - exp(-t)) = 1 / expm1(t), and t' = t (alpha / y, log z, -alpha / sigma).
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

constexpr Input kShapeInput = {"shape", Support::Positive, false, std::nullopt, "shape (alpha, k)"};
constexpr Input kScaleInput = {"scale", Support::Positive, false, std::nullopt, "scale (sigma, lambda)"};

struct Weibull {
  static constexpr const char* name = "weibull";
  static constexpr const char* doc = "Weibull(y | shape, scale) on y > 0";
  static constexpr Input inputs[] = {
      {"y", Support::Positive, false, std::nullopt, "variate"}, kShapeInput, kScaleInput};
  enum { kY, kShape, kScale };
  using Derived = Derive<Of<kY, Log>, Of<kScale, Log>>;

  template <class Out, class Y, class Shape, class Scale, class LogY, class LogScale>
  static void log_density(Out& out, const Y& y, const Shape& alpha, const Scale& sigma, const LogY& log_y,
                          const LogScale& log_sigma) {
    const auto log_z = out.keep(log_y - log_sigma);
    const auto t = out.keep(exp(alpha * log_z));
    out.lp((alpha - 1.0) * log_z - t);
    if (auto lp = out.term(kShape)) lp += log(alpha);
    if (auto lp = out.term(kScale)) lp -= log_sigma;
    out.grad(kY, (alpha - 1.0 - alpha * t) / y);
    out.grad(kShape, 1.0 / alpha + log_z * (1.0 - t));
    out.grad(kScale, alpha * (t - 1.0) / sigma);
  }
};

struct WeibullLccdf {
  static constexpr const char* name = "weibull_lccdf";
  static constexpr const char* doc = "log P(Y > y), Y ~ Weibull(shape, scale), y > 0 (right-censored observations)";
  static constexpr Input inputs[] = {
      {"y", Support::Positive, false, std::nullopt, "variate (censoring point)"}, kShapeInput, kScaleInput};
  enum { kY, kShape, kScale };
  using Derived = Derive<Of<kY, Log>, Of<kScale, Log>>;

  template <class Out, class Y, class Shape, class Scale, class LogY, class LogScale>
  static void log_density(Out& out, const Y& y, const Shape& alpha, const Scale& sigma, const LogY& log_y,
                          const LogScale& log_sigma) {
    const auto log_z = out.keep(log_y - log_sigma);
    const auto t = out.keep(exp(alpha * log_z));
    out.lp(-t);
    out.grad(kY, -alpha * t / y);
    out.grad(kShape, -t * log_z);
    out.grad(kScale, alpha * t / sigma);
  }
};

// log(1 - exp(-t)) from log t: special::Log1mExpNeg, or log t - t / 2 where t underflows.
struct Log1mExpNegOfLog {
  double operator()(double log_t) const {
    const double t = std::exp(log_t);
    return log_t < -30.0 ? log_t - 0.5 * t : special::Log1mExpNeg()(t);
  }
};

struct WeibullLcdf {
  static constexpr const char* name = "weibull_lcdf";
  static constexpr const char* doc = "log P(Y <= y), Y ~ Weibull(shape, scale), y > 0 (left-censored observations)";
  static constexpr Input inputs[] = {
      {"y", Support::Positive, false, std::nullopt, "variate (censoring point)"}, kShapeInput, kScaleInput};
  enum { kY, kShape, kScale };
  using Derived = Derive<Of<kY, Log>, Of<kScale, Log>>;

  template <class Out, class Y, class Shape, class Scale, class LogY, class LogScale>
  static void log_density(Out& out, const Y& y, const Shape& alpha, const Scale& sigma, const LogY& log_y,
                          const LogScale& log_sigma) {
    const auto log_z = out.keep(log_y - log_sigma);
    const auto log_t = out.keep(alpha * log_z);
    out.lp(special::map<Log1mExpNegOfLog>(log_t));
    const auto h = out.keep(special::map<special::XOverExpm1>(exp(log_t)));  // t / expm1(t)
    out.grad(kY, h * alpha / y);
    out.grad(kShape, h * log_z);
    out.grad(kScale, -h * alpha / sigma);
  }
};

}  // namespace

void register_weibull(KernelRegistry& r) {
  register_elementwise<Weibull>(r);
  register_elementwise<WeibullLccdf>(r);
  register_elementwise<WeibullLcdf>(r);
}

}  // namespace fastvi::kernels
