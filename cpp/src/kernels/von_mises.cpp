// von_mises(y | loc, kappa), d = y - loc:
//   log p = kappa cos(d) - log(2 pi) - log I0(kappa)
//         = -2 kappa sin^2(d / 2) - log(2 pi) - (log I0(kappa) - kappa)
// (the second form has no cancellation between kappa cos(d) and log I0(kappa) ~ kappa when
// kappa is large), with log I0(kappa) - kappa and 1 - I1 / I0 from special::LogBesselI0Scaled and
// OneMinusBesselI1OverI0: std::cyl_bessel_i below kappa = 500, the exponentially scaled
// asymptotic series above (where I0 itself overflows near kappa = 713).
//   d/dy = -kappa sin(d),  d/dkappa = cos(d) - I1 / I0 = -2 sin^2(d / 2) + (1 - I1 / I0)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct VonMises {
  static constexpr const char* name = "von_mises";
  static constexpr const char* doc = "von Mises(y | loc, kappa), an angle in radians";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate (an angle)"},
                                     {"loc", Support::Real, false, 0.0, "mean direction (mu)"},
                                     {"kappa", Support::Positive, false, std::nullopt, "concentration"}};
  enum { kY, kLoc, kKappa };

  template <class Out, class Y, class Loc, class Kappa>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Kappa& kappa) {
    const auto d = out.keep(y - loc);
    const auto versine = out.keep(2.0 * square(special::sin(0.5 * d)));  // 1 - cos(d)
    out.lp(-kappa * versine);
    if (auto lp = out.term(kKappa)) lp -= special::map<special::LogBesselI0Scaled>(kappa);
    if (auto lp = out.term()) lp -= math::kLog2 + math::kLogPi;
    if (out.param(kY) || out.param(kLoc)) {
      const auto s = out.keep(kappa * special::sin(d));
      out.grad(kY, -s);
      out.grad(kLoc, s);
    }
    if (out.param(kKappa)) out.grad(kKappa, special::map<special::OneMinusBesselI1OverI0>(kappa) - versine);
  }
};

}  // namespace

void register_von_mises(KernelRegistry& r) { register_elementwise<VonMises>(r); }

}  // namespace fastvi::kernels
