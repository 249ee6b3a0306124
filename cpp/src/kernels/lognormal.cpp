// lognormal(y | loc, scale) for y > 0, z = (log(y) - loc) / scale:
//   log p = -log(y) - log(scale) - log(sqrt(2 pi)) - z^2 / 2
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Lognormal {
  static constexpr const char* name = "lognormal";
  static constexpr const char* doc = "Lognormal(y | loc, scale) on y > 0: log(y) ~ Normal(loc, scale)";
  static constexpr Input inputs[] = {{"y", Support::Positive, false, std::nullopt, "variate"},
                                     {"loc", Support::Real, false, 0.0, "mean of log(y)"},
                                     {"scale", Support::Positive, false, 1.0, "standard deviation of log(y)"}};
  enum { kY, kLoc, kScale };
  using Derived = Derive<Of<kY, Log>, Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class LogY, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const LogY& log_y, const InvScale& inv) {
    const auto z = out.keep((log_y - loc) * inv);
    out.lp(-0.5 * square(z));
    if (auto lp = out.term(kY)) lp -= log_y;
    if (auto lp = out.term(kScale)) lp += log(inv);
    if (auto lp = out.term()) lp -= math::kHalfLog2Pi;
    out.grad(kY, -(1.0 + z * inv) / y);
    out.grad(kLoc, z * inv);
    out.grad(kScale, (square(z) - 1.0) * inv);
  }
};

}  // namespace

void register_lognormal(KernelRegistry& r) { register_elementwise<Lognormal>(r); }

}  // namespace fastvi::kernels
