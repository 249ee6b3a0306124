// half_cauchy(y | scale) for y >= 0, z = y / scale:  log p = log(2 / pi) - log(scale) - log1p(z^2)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct HalfCauchy {
  static constexpr const char* name = "half_cauchy";
  static constexpr const char* doc = "Half-Cauchy(y | scale) on y >= 0";
  static constexpr Input inputs[] = {{"y", Support::NonNegative, false, std::nullopt, "variate"},
                                     {"scale", Support::Positive, false, 1.0, "scale (the median)"}};
  enum { kY, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Scale&, const InvScale& inv) {
    const auto z = out.keep(y * inv);
    out.lp(-log1p(square(z)));
    if (auto lp = out.term(kScale)) lp += log(inv);
    if (auto lp = out.term()) lp += math::kLog2 - math::kLogPi;
    const auto r = out.keep(inv / (1.0 + square(z)));  // 1 / (scale (1 + z^2))
    out.grad(kY, -2.0 * z * r);
    out.grad(kScale, (square(z) - 1.0) * r);
  }
};

}  // namespace

void register_half_cauchy(KernelRegistry& r) { register_elementwise<HalfCauchy>(r); }

}  // namespace fastvi::kernels
