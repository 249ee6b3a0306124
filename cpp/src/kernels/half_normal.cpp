// half_normal(y | scale) for y >= 0, z = y / scale:  log p = log(2) - log(sqrt(2 pi)) - log(scale) - z^2 / 2
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct HalfNormal {
  static constexpr const char* name = "half_normal";
  static constexpr const char* doc = "Half-normal(y | scale) on y >= 0";
  static constexpr Input inputs[] = {
      {"y", Support::NonNegative, false, std::nullopt, "variate"},
      {"scale", Support::Positive, false, 1.0, "scale (the standard deviation of the unfolded normal)"}};
  enum { kY, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Scale&, const InvScale& inv) {
    const auto z = out.keep(y * inv);
    out.lp(-0.5 * square(z));
    if (auto lp = out.term(kScale)) lp += log(inv);
    if (auto lp = out.term()) lp += math::kLog2 - math::kHalfLog2Pi;
    out.grad(kY, -z * inv);
    out.grad(kScale, (square(z) - 1.0) * inv);
  }
};

}  // namespace

void register_half_normal(KernelRegistry& r) { register_elementwise<HalfNormal>(r); }

}  // namespace fastvi::kernels
