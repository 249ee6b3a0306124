// skew_normal(y | loc, scale, alpha), z = (y - loc) / scale (Stan's xi, omega, alpha):
//   log p = log(2) - log(scale) - log(sqrt(2 pi)) - z^2 / 2 + log Phi(alpha z)
// log Phi and its derivative phi / Phi come from special::LogPhi and DLogPhi, accurate far into
// the left tail (alpha z = -40 and beyond), where log(Phi) of the naive form is -inf.
//   d/dz log p = -z + alpha r,  r = phi(alpha z) / Phi(alpha z);  d/dalpha = z r
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct SkewNormal {
  static constexpr const char* name = "skew_normal";
  static constexpr const char* doc = "SkewNormal(y | loc, scale, alpha)";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                     {"loc", Support::Real, false, 0.0, "location (xi)"},
                                     {"scale", Support::Positive, false, 1.0, "scale (omega)"},
                                     {"alpha", Support::Real, false, std::nullopt, "skewness (shape)"}};
  enum { kY, kLoc, kScale, kAlpha };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class Alpha, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const Alpha& alpha, const InvScale& inv) {
    const auto z = out.keep((y - loc) * inv);
    const auto w = out.keep(alpha * z);
    out.lp(special::map<special::LogPhi>(w) - 0.5 * square(z));
    if (auto lp = out.term(kScale)) lp += log(inv);
    if (auto lp = out.term()) lp += math::kLog2 - math::kHalfLog2Pi;
    const auto r = out.keep(special::map<special::DLogPhi>(w));
    const auto dz = out.keep(alpha * r - z);  // d log p / dz
    out.grad(kY, dz * inv);
    out.grad(kLoc, -dz * inv);
    out.grad(kScale, -(dz * z + 1.0) * inv);
    out.grad(kAlpha, z * r);
  }
};

}  // namespace

void register_skew_normal(KernelRegistry& r) { register_elementwise<SkewNormal>(r); }

}  // namespace fastvi::kernels
