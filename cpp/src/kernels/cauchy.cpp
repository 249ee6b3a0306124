// cauchy(y | loc, scale), z = (y - loc) / scale:  log p = -log(pi) - log(scale) - log1p(z^2)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Cauchy {
  static constexpr const char* name = "cauchy";
  static constexpr const char* doc = "Cauchy(y | loc, scale)";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                     {"loc", Support::Real, false, 0.0, "location (the median)"},
                                     {"scale", Support::Positive, false, 1.0, "scale (half the interquartile range)"}};
  enum { kY, kLoc, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const InvScale& inv) {
    const auto z = out.keep((y - loc) * inv);
    out.lp(-log1p(square(z)));
    if (auto lp = out.term(kScale)) lp += log(inv);
    if (auto lp = out.term()) lp -= math::kLogPi;
    const auto r = out.keep(inv / (1.0 + square(z)));  // 1 / (scale (1 + z^2))
    out.grad(kY, -2.0 * z * r);
    out.grad(kLoc, 2.0 * z * r);
    out.grad(kScale, (square(z) - 1.0) * r);
  }
};

}  // namespace

void register_cauchy(KernelRegistry& r) { register_elementwise<Cauchy>(r); }

}  // namespace fastvi::kernels
