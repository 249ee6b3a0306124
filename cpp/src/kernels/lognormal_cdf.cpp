// Censoring companions of lognormal, z = (log(y) - loc) / scale, y > 0:
//   lognormal_lcdf(y | loc, scale)  = log Phi(z)    (left-censored: log P(Y <= y))
//   lognormal_lccdf(y | loc, scale) = log Phi(-z)   (right-censored: log P(Y > y))
// with special::LogPhi / DLogPhi as in normal_cdf.cpp; d/dy = (d/dz) / (scale y).
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

constexpr Input kLocInput = {"loc", Support::Real, false, 0.0, "mean of log(y)"};
constexpr Input kScaleInput = {"scale", Support::Positive, false, 1.0, "standard deviation of log(y)"};

template <int Sign>
struct LognormalCdf {
  static constexpr const char* name = Sign > 0 ? "lognormal_lcdf" : "lognormal_lccdf";
  static constexpr const char* doc =
      Sign > 0 ? "log P(Y <= y), Y ~ Lognormal(loc, scale), y > 0 (left-censored observations)"
               : "log P(Y > y), Y ~ Lognormal(loc, scale), y > 0 (right-censored observations)";
  static constexpr Input inputs[] = {
      {"y", Support::Positive, false, std::nullopt, "variate (censoring point)"}, kLocInput, kScaleInput};
  enum { kY, kLoc, kScale };
  using Derived = Derive<Of<kY, Log>, Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class LogY, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const LogY& log_y, const InvScale& inv) {
    const auto u = out.keep(double(Sign) * (log_y - loc) * inv);  // +-z
    out.lp(special::map<special::LogPhi>(u));
    const auto dz = out.keep(double(Sign) * special::map<special::DLogPhi>(u));  // d log p / dz
    out.grad(kY, dz * inv / y);
    out.grad(kLoc, -dz * inv);
    out.grad(kScale, -dz * (double(Sign) * u) * inv);
  }
};

}  // namespace

void register_lognormal_cdf(KernelRegistry& r) {
  register_elementwise<LognormalCdf<1>>(r);
  register_elementwise<LognormalCdf<-1>>(r);
}

}  // namespace fastvi::kernels
