// double_exponential(y | loc, scale) (Laplace):  log p = -log(2 scale) - |y - loc| / scale
// (at y = loc the partials in y and loc are taken as 0, the subgradient's midpoint).
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct DoubleExponential {
  static constexpr const char* name = "double_exponential";
  static constexpr const char* doc = "Laplace (double exponential)(y | loc, scale)";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                     {"loc", Support::Real, false, 0.0, "location (mean and median)"},
                                     {"scale", Support::Positive, false, 1.0, "scale (mean absolute deviation)"}};
  enum { kY, kLoc, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const InvScale& inv) {
    const auto d = out.keep(y - loc);
    out.lp(-abs(d) * inv);
    if (auto lp = out.term(kScale)) lp += log(inv);
    if (auto lp = out.term()) lp -= math::kLog2;
    out.grad(kY, -sign(d) * inv);
    out.grad(kLoc, sign(d) * inv);
    out.grad(kScale, (abs(d) * inv - 1.0) * inv);
  }
};

}  // namespace

void register_double_exponential(KernelRegistry& r) { register_elementwise<DoubleExponential>(r); }

}  // namespace fastvi::kernels
