// logistic(y | loc, scale), z = (y - loc) / scale:
//   log p = -z - 2 log(1 + exp(-z)) - log(scale) = -|z| - 2 log1p(exp(-|z|)) - log(scale)
//   d/dz log p = 1 - 2 inv_logit(z) = -tanh(z / 2) = -sign(z) (1 - t) / (1 + t),  t = exp(-|z|)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Logistic {
  static constexpr const char* name = "logistic";
  static constexpr const char* doc = "Logistic(y | loc, scale)";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                     {"loc", Support::Real, false, 0.0, "location (mean and median)"},
                                     {"scale", Support::Positive, false, 1.0, "scale (sd = scale pi / sqrt 3)"}};
  enum { kY, kLoc, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const InvScale& inv) {
    const auto z = out.keep((y - loc) * inv);
    const auto t = out.keep(exp(-abs(z)));
    out.lp(-abs(z) - 2.0 * log1p_nonneg(t));
    if (auto lp = out.term(kScale)) lp += log(inv);
    const auto dz = out.keep(-sign(z) * (1.0 - t) / (1.0 + t));  // d log p / dz
    out.grad(kY, dz * inv);
    out.grad(kLoc, -dz * inv);
    out.grad(kScale, -(dz * z + 1.0) * inv);
  }
};

}  // namespace

void register_logistic(KernelRegistry& r) { register_elementwise<Logistic>(r); }

}  // namespace fastvi::kernels
