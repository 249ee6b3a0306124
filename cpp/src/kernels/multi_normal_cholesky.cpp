// multi_normal_cholesky(y | mu, L): y_n ~ MultiNormal(mu_n, L L^T) for a lower-triangular K x K
// factor L (Stan's multi_normal_cholesky_lpdf; L's upper triangle is ignored). With r_n = y_n - mu_n,
// z_n = L^-1 r_n (forward substitution) and w_n = L^-T z_n (back substitution):
//   log p = -N K / 2 log(2 pi) - N sum_k log|L_kk| - 1/2 sum_n |z_n|^2
//   d/d y_n = -w_n,   d/d mu_n = w_n,   d/d L_ij = sum_n w_ni z_nj - N [i == j] / L_ii   (i >= j)
// (d(-|z|^2 / 2) = w^T dL z, as d(L^-1) = -L^-1 dL L^-1.) y has shape (K,) or (N, K); mu (K,),
// shared, or y's shape. O(N K^2) per draw, in two K-element scratch vectors (and a K x K copy of a
// parameter L that is not one block of the draw): no allocation.
#include <cmath>
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

class MultiNormalCholesky final : public Kernel {
 public:
  MultiNormalCholesky(Operand y, Operand mu, Operand l) : y_(std::move(y)), mu_(std::move(mu)), l_(std::move(l)) {
    if (y_.shape.empty() || y_.shape.size() > 2)
      throw std::invalid_argument("input 'y' must have shape (K,) or (N, K), got " + format_shape(y_.shape));
    k_ = y_.shape.back();
    n_ = y_.shape.size() == 2 ? y_.shape[0] : 1;
    if (k_ < 1) throw std::invalid_argument("input 'y' needs at least one component, got " + format_shape(y_.shape));
    mu_shared_ = mu_.shape.size() == 1 && mu_.shape[0] == k_;
    if (!mu_shared_ && mu_.shape != y_.shape && !mu_.is_scalar())
      throw std::invalid_argument("input 'mu' must have shape (" + std::to_string(k_) + ",), y's shape " +
                                  format_shape(y_.shape) + " or be a scalar, got " + format_shape(mu_.shape));
    mu_scalar_ = mu_.is_scalar() && !(mu_shared_ && k_ == 1);
    if (l_.shape != std::vector<Index>{k_, k_})
      throw std::invalid_argument("input 'L' must have shape (" + std::to_string(k_) + ", " + std::to_string(k_) +
                                  "), got " + format_shape(l_.shape));
    if (!l_.is_param)
      for (Index i = 0; i < k_; ++i)
        if (!(l_.data[i * k_ + i] != 0.0))
          throw std::invalid_argument("input 'L' must have a non-zero diagonal, got L[" + std::to_string(i) + ", " +
                                      std::to_string(i) + "] = " + format_number(l_.data[i * k_ + i]));
  }

  Index scratch_size(Index, int) const override { return 2 * k_ + (l_.is_param && !l_.contiguous() ? k_ * k_ : 0); }

  void evaluate(const Batch& b) const override {
    using ConstRow = Eigen::Map<const Eigen::VectorXd>;
    double* z = b.scratch;
    double* w = b.scratch + k_;
    double* copy = b.scratch + 2 * k_;  // this draw's L, for a parameter L that is not one block
    const double constant = -double(n_) * double(k_) * math::kHalfLog2Pi;
    const bool any_grad = y_.is_param || mu_.is_param || l_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      // L of draw s, row-major (K, K): in place where it is one block, else gathered once
      const double* l = l_.data.data();
      if (l_.is_param && l_.contiguous()) {
        l = b.value + s * b.ld + l_.row;
      } else if (l_.is_param) {
        for (Index e = 0; e < k_ * k_; ++e) copy[e] = l_.value(b, e, s);
        l = copy;
      }
      double* gl = l_.is_param && l_.contiguous() ? b.grad + s * b.ld + l_.row : nullptr;
      double lp = constant;
      for (Index i = 0; i < k_; ++i) {
        const double d = l[i * k_ + i];
        lp -= double(n_) * std::log(std::abs(d));
        if (l_.is_param) l_.add_grad(b, i * k_ + i, s, -double(n_) / d);
      }
      for (Index n = 0; n < n_; ++n) {
        for (Index i = 0; i < k_; ++i) {  // z = L^-1 (y_n - mu_n), forward substitution
          const Index e = n * k_ + i;
          const double r = y_.value(b, e, s) - mu_.value(b, mu_scalar_ ? 0 : mu_shared_ ? i : e, s);
          z[i] = (r - ConstRow(l + i * k_, i).dot(ConstRow(z, i))) / l[i * k_ + i];
        }
        lp -= 0.5 * ConstRow(z, k_).squaredNorm();
        if (!any_grad) continue;
        // w = L^-T z, back substitution a column of L^T (a row of L) at a time
        Eigen::Map<Eigen::VectorXd>(w, k_) = ConstRow(z, k_);
        for (Index i = k_ - 1; i >= 0; --i) {
          w[i] /= l[i * k_ + i];
          Eigen::Map<Eigen::VectorXd>(w, i) -= w[i] * ConstRow(l + i * k_, i);
        }
        for (Index i = 0; i < k_; ++i) {
          const Index e = n * k_ + i;
          if (y_.is_param) y_.add_grad(b, e, s, -w[i]);
          if (mu_.is_param) mu_.add_grad(b, mu_scalar_ ? 0 : mu_shared_ ? i : e, s, w[i]);
          if (gl != nullptr) {
            Eigen::Map<Eigen::VectorXd>(gl + i * k_, i + 1) += w[i] * ConstRow(z, i + 1);
          } else if (l_.is_param) {
            for (Index j = 0; j <= i; ++j) l_.add_grad(b, i * k_ + j, s, w[i] * z[j]);
          }
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, mu_, l_;
  Index k_ = 0, n_ = 1;
  bool mu_shared_ = true, mu_scalar_ = false;
};

}  // namespace

void register_multi_normal_cholesky(KernelRegistry& r) {
  r.add({"multi_normal_cholesky",
         "MultiNormal(y | mu, L L^T) for a lower-triangular Cholesky factor L (upper triangle ignored)",
         {{"y", Support::Real, false, std::nullopt, "variate (K,) or (N, K)"},
          {"mu", Support::Real, false, 0.0, "mean (K,), y's shape, or a scalar"},
          {"L", Support::Real, false, std::nullopt, "Cholesky factor of the covariance (K, K), lower triangular"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<MultiNormalCholesky>(std::move(ops[0]), std::move(ops[1]), std::move(ops[2]));
         }});
}

}  // namespace fastvi::kernels
