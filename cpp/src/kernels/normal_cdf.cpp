// Censoring companions of normal, z = (y - loc) / scale:
//   normal_lcdf(y | loc, scale)  = log Phi(z)    (left-censored: log P(Y <= y))
//   normal_lccdf(y | loc, scale) = log Phi(-z)   (right-censored: log P(Y > y))
// log Phi and phi / Phi from special::LogPhi and DLogPhi: erfc-based, with the asymptotic series
// where erfc underflows, so that log Phi(-40) = -804.608... and its slope ~40 stay exact.
//   d/dz log Phi(z) = r(z) = phi(z) / Phi(z);  d/dz log Phi(-z) = -r(-z)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

constexpr Input kLocInput = {"loc", Support::Real, false, 0.0, "mean"};
constexpr Input kScaleInput = {"scale", Support::Positive, false, 1.0, "standard deviation"};

// Sign = +1: log Phi(z); -1: log Phi(-z).
template <int Sign>
struct NormalCdf {
  static constexpr const char* name = Sign > 0 ? "normal_lcdf" : "normal_lccdf";
  static constexpr const char* doc = Sign > 0 ? "log P(Y <= y), Y ~ Normal(loc, scale) (left-censored observations)"
                                              : "log P(Y > y), Y ~ Normal(loc, scale) (right-censored observations)";
  static constexpr Input inputs[] = {
      {"y", Support::Real, false, std::nullopt, "variate (censoring point)"}, kLocInput, kScaleInput};
  enum { kY, kLoc, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const InvScale& inv) {
    const auto u = out.keep(double(Sign) * (y - loc) * inv);  // +-z
    out.lp(special::map<special::LogPhi>(u));
    const auto dz = out.keep(double(Sign) * special::map<special::DLogPhi>(u));  // d log p / dz
    out.grad(kY, dz * inv);
    out.grad(kLoc, -dz * inv);
    out.grad(kScale, -dz * (double(Sign) * u) * inv);
  }
};

}  // namespace

void register_normal_cdf(KernelRegistry& r) {
  register_elementwise<NormalCdf<1>>(r);
  register_elementwise<NormalCdf<-1>>(r);
}

}  // namespace fastvi::kernels
