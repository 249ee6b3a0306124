// gamma(y | shape, rate) for y > 0:
//   log p = shape * log(rate) - lgamma(shape) + (shape - 1) * log(y) - rate * y
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Gamma {
  static constexpr const char* name = "gamma";
  static constexpr const char* doc = "Gamma(y | shape, rate) on y > 0";
  static constexpr Input inputs[] = {{"y", Support::Positive, false, std::nullopt, "variate"},
                                     {"shape", Support::Positive, false, std::nullopt, "shape (alpha)"},
                                     {"rate", Support::Positive, false, std::nullopt, "rate (beta = 1 / scale)"}};
  enum { kY, kShape, kRate };
  using Derived = Derive<Of<kY, Log>, Of<kRate, Log>>;

  template <class Out, class Y, class Shape, class Rate, class LogY, class LogRate>
  static void log_density(Out& out, const Y& y, const Shape& alpha, const Rate& beta, const LogY& log_y,
                          const LogRate& log_beta) {
    out.lp((alpha - 1.0) * log_y - beta * y);
    if (auto lp = out.term(kShape, kRate)) lp += alpha * log_beta;
    if (auto lp = out.term(kShape)) lp -= log_gamma(alpha);
    out.grad(kY, (alpha - 1.0) / y - beta);
    if (out.param(kShape)) out.grad(kShape, log_beta - digamma(alpha) + log_y);
    out.grad(kRate, alpha / beta - y);
  }
};

}  // namespace

void register_gamma(KernelRegistry& r) { register_elementwise<Gamma>(r); }

}  // namespace fastvi::kernels
