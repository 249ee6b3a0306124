// inv_gamma(y | shape, scale) for y > 0:
//   log p = shape log(scale) - lgamma(shape) - (shape + 1) log(y) - scale / y
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct InvGamma {
  static constexpr const char* name = "inv_gamma";
  static constexpr const char* doc = "InverseGamma(y | shape, scale) on y > 0: 1 / y ~ Gamma(shape, rate = scale)";
  static constexpr Input inputs[] = {{"y", Support::Positive, false, std::nullopt, "variate"},
                                     {"shape", Support::Positive, false, std::nullopt, "shape (alpha)"},
                                     {"scale", Support::Positive, false, std::nullopt, "scale (beta)"}};
  enum { kY, kShape, kScale };
  using Derived = Derive<Of<kY, Log>, Of<kY, Inverse>, Of<kScale, Log>>;

  template <class Out, class Y, class Shape, class Scale, class LogY, class InvY, class LogScale>
  static void log_density(Out& out, const Y&, const Shape& alpha, const Scale& beta, const LogY& log_y,
                          const InvY& inv_y, const LogScale& log_beta) {
    out.lp(-(alpha + 1.0) * log_y - beta * inv_y);
    if (auto lp = out.term(kShape, kScale)) lp += alpha * log_beta;
    if (auto lp = out.term(kShape)) lp -= log_gamma(alpha);
    out.grad(kY, (beta * inv_y - (alpha + 1.0)) * inv_y);
    if (out.param(kShape)) out.grad(kShape, log_beta - digamma(alpha) - log_y);
    out.grad(kScale, alpha / beta - inv_y);
  }
};

}  // namespace

void register_inv_gamma(KernelRegistry& r) { register_elementwise<InvGamma>(r); }

}  // namespace fastvi::kernels
