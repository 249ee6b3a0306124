// normal(y | loc, scale) = -log(scale) - log(sqrt(2 pi)) - z^2 / 2,  z = (y - loc) / scale
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Normal {
  static constexpr const char* name = "normal";
  static constexpr const char* doc = "Normal(y | loc, scale)";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                     {"loc", Support::Real, false, 0.0, "mean"},
                                     {"scale", Support::Positive, false, 1.0, "standard deviation"}};
  enum { kY, kLoc, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const InvScale& inv) {
    if (auto lp = out.term(kScale)) lp += log(inv);
    const auto z = out.keep((y - loc) * inv);
    out.lp(-0.5 * square(z));
    if (auto lp = out.term()) lp -= math::kHalfLog2Pi;
    out.grad(kY, -z * inv);
    out.grad(kLoc, z * inv);
    out.grad(kScale, (square(z) - 1.0) * inv);
  }
};

}  // namespace

void register_normal(KernelRegistry& r) { register_elementwise<Normal>(r); }

}  // namespace fastvi::kernels
