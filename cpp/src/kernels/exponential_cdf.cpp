// Censoring companions of exponential, x = rate * y:
//   exponential_lccdf(y | rate) = -x                 (right-censored: log P(Y > y)), y >= 0
//   exponential_lcdf(y | rate)  = log(1 - exp(-x))   (left-censored: log P(Y <= y)), y > 0,
//     as special::Log1mExpNeg (no cancellation for small x, no log(0) for large x);
//     d/dx = 1 / expm1(x), so d/dy = h / y and d/drate = h / rate with h = x / expm1(x).
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

constexpr Input kRateInput = {"rate", Support::Positive, false, 1.0, "rate (1 / mean)"};

struct ExponentialLccdf {
  static constexpr const char* name = "exponential_lccdf";
  static constexpr const char* doc = "log P(Y > y), Y ~ Exponential(rate), y >= 0 (right-censored observations)";
  static constexpr Input inputs[] = {{"y", Support::NonNegative, false, std::nullopt, "variate (censoring point)"},
                                     kRateInput};
  enum { kY, kRate };

  template <class Out, class Y, class Rate>
  static void log_density(Out& out, const Y& y, const Rate& rate) {
    out.lp(-rate * y);
    out.grad(kY, -rate);
    out.grad(kRate, -y);
  }
};

struct ExponentialLcdf {
  static constexpr const char* name = "exponential_lcdf";
  static constexpr const char* doc = "log P(Y <= y), Y ~ Exponential(rate), y > 0 (left-censored observations)";
  static constexpr Input inputs[] = {{"y", Support::Positive, false, std::nullopt, "variate (censoring point)"},
                                     kRateInput};
  enum { kY, kRate };

  template <class Out, class Y, class Rate>
  static void log_density(Out& out, const Y& y, const Rate& rate) {
    const auto x = out.keep(rate * y);
    out.lp(special::map<special::Log1mExpNeg>(x));
    const auto h = out.keep(special::map<special::XOverExpm1>(x));
    out.grad(kY, h / y);
    out.grad(kRate, h / rate);
  }
};

}  // namespace

void register_exponential_cdf(KernelRegistry& r) {
  register_elementwise<ExponentialLccdf>(r);
  register_elementwise<ExponentialLcdf>(r);
}

}  // namespace fastvi::kernels
