// dirichlet(theta | alpha) for theta on the simplex (Stan's dirichlet_lpdf), the components on the
// last axis:
//   log p = lgamma(sum_k alpha_k) - sum_k lgamma(alpha_k) + sum_k (alpha_k - 1) log theta_k
//   d/d theta_k = (alpha_k - 1) / theta_k
//   d/d alpha_k = digamma(sum_j alpha_j) - digamma(alpha_k) + log theta_k
// theta has shape (K,) or (N, K) (N independent simplexes); alpha (K,), shared, or theta's shape.
// A parameter theta should be declared with transform="simplex"; data theta is checked to lie on
// the simplex. Not element-wise (the normaliser couples a row's components).
#include <cmath>
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

class Dirichlet final : public Kernel {
 public:
  Dirichlet(Operand theta, Operand alpha) : theta_(std::move(theta)), alpha_(std::move(alpha)) {
    if (theta_.shape.empty() || theta_.shape.size() > 2)
      throw std::invalid_argument("input 'theta' must have shape (K,) or (N, K), got " + format_shape(theta_.shape));
    k_ = theta_.shape.back();
    rows_ = theta_.shape.size() == 2 ? theta_.shape[0] : 1;
    if (k_ < 2)
      throw std::invalid_argument("input 'theta' needs at least 2 components on its last axis, got " +
                                  format_shape(theta_.shape));
    const bool shared = alpha_.shape.size() == 1 && alpha_.shape[0] == k_;
    if (!shared && alpha_.shape != theta_.shape)
      throw std::invalid_argument("input 'alpha' must have shape (" + std::to_string(k_) + ",) or theta's shape " +
                                  format_shape(theta_.shape) + ", got " + format_shape(alpha_.shape));
    alpha_shared_ = shared;
    if (!theta_.is_param)
      for (Index i = 0; i < rows_; ++i) {
        double sum = 0.0;
        for (Index k = 0; k < k_; ++k) sum += theta_.data[i * k_ + k];
        if (!(std::abs(sum - 1.0) <= 1e-8))
          throw std::invalid_argument("input 'theta' must sum to 1 along its last axis, but row " + std::to_string(i) +
                                      " sums to " + format_number(sum));
      }
  }

  void evaluate(const Batch& b) const override {
    for (Index s = 0; s < b.draws; ++s) {
      double lp = 0.0;
      for (Index i = 0; i < rows_; ++i) {
        const Index a0 = alpha_shared_ ? 0 : i * k_, t0 = i * k_;
        double alpha_sum = 0.0;
        for (Index k = 0; k < k_; ++k) {
          const double a = alpha_.value(b, a0 + k, s), t = theta_.value(b, t0 + k, s);
          alpha_sum += a;
          lp += (a - 1.0) * std::log(t) - math::log_gamma(a);
          if (theta_.is_param) b.grad[s * b.ld + theta_.row + t0 + k] += (a - 1.0) / t;
        }
        lp += math::log_gamma(alpha_sum);
        if (alpha_.is_param) {
          const double psi_sum = math::digamma(alpha_sum);
          for (Index k = 0; k < k_; ++k) {
            const double a = alpha_.value(b, a0 + k, s), t = theta_.value(b, t0 + k, s);
            b.grad[s * b.ld + alpha_.row + a0 + k] += psi_sum - math::digamma(a) + std::log(t);
          }
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand theta_, alpha_;
  Index k_ = 0, rows_ = 1;
  bool alpha_shared_ = true;
};

}  // namespace

void register_dirichlet(KernelRegistry& r) {
  r.add({"dirichlet",
         "Dirichlet(theta | alpha) for theta on the simplex (components on the last axis)",
         {{"theta", Support::NonNegative, false, std::nullopt, "simplex (K,) or (N, K); transform='simplex'"},
          {"alpha", Support::Positive, false, std::nullopt, "concentrations (K,) or theta's shape"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<Dirichlet>(std::move(ops[0]), std::move(ops[1]));
         }});
}

}  // namespace fastvi::kernels
