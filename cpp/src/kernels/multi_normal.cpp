// multi_normal(y | mu, Sigma): y_n ~ MultiNormal(mu_n, Sigma) for a K x K covariance Sigma (Stan's
// multi_normal_lpdf), with y and mu laid out as for multi_normal_cholesky. With L L^T = Sigma,
// r_n = y_n - mu_n, z_n = L^-1 r_n and w_n = L^-T z_n = Sigma^-1 r_n:
//   log p = -N K / 2 log(2 pi) - N sum_k log L_kk - 1/2 sum_n |z_n|^2
//   d/d y_n = -w_n,   d/d mu_n = w_n,
//   d/d L_ij = sum_n w_ni z_nj - N [i == j] / L_ii   (i >= j; multi_normal_cholesky's gradient),
// and d/d Sigma from that by the Cholesky factorisation's reverse pass (dense_cholesky.hpp): O(K^3
// / 3), where the closed form -1/2 (N Sigma^-1 - sum_n w_n w_n^T) needs Sigma^-1, twice that.
// The density is taken of Sigma's symmetric part (Sigma + Sigma^T) / 2, as the cholesky node does,
// so the symmetric gradient above goes to every element (i, j): finite differences in any single
// element of Sigma agree with it, and a Sigma built symmetrically from parameters gets the exact
// chain rule (its (i, j) and (j, i) elements each receive their share).
//
// Data Sigma is checked (symmetric, positive-definite) and factored once, here; a parameter Sigma is
// factored per draw into scratch, and a draw where it is not positive-definite gets a NaN log
// density (the fit skips it) and no gradient. O(K^3 + N K^2) per draw, in 2 K^2 + 2 K doubles of
// scratch: no allocation.
#include <cmath>
#include <stdexcept>
#include <string>

#include "../dense_cholesky.hpp"
#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

std::string at(const char* name, Index i, Index j) {
  return std::string(name) + "[" + std::to_string(i) + ", " + std::to_string(j) + "]";
}

class MultiNormal final : public Kernel {
 public:
  MultiNormal(Operand y, Operand mu, Operand sigma) : y_(std::move(y)), mu_(std::move(mu)), sigma_(std::move(sigma)) {
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
    if (sigma_.shape != std::vector<Index>{k_, k_})
      throw std::invalid_argument("input 'Sigma' must have shape (" + std::to_string(k_) + ", " + std::to_string(k_) +
                                  "), got " + format_shape(sigma_.shape));
    if (!sigma_.is_param) factor_data();
  }

  Index scratch_size(Index, int) const override { return sigma_.is_param ? 2 * k_ * k_ + 2 * k_ : 2 * k_; }

  void evaluate(const Batch& b) const override {
    double* z = b.scratch;
    double* w = z + k_;
    double* l = w + k_;       // this draw's factor (parameter Sigma)
    double* m = l + k_ * k_;  // d lp / d L, then d lp / d Sigma (lower triangles)
    for (Index s = 0; s < b.draws; ++s) {
      if (sigma_.is_param) {
        const double* a = b.value + s * b.ld + sigma_.row;
        for (Index i = 0; i < k_; ++i)
          for (Index j = 0; j <= i; ++j) l[i * k_ + j] = 0.5 * (a[i * k_ + j] + a[j * k_ + i]);
        if (!dense::cholesky_in_place(l, k_)) {
          b.lp[s] += kNaN;  // not a covariance matrix: an invalid draw
          continue;
        }
        Eigen::Map<RowMatrix> mbar(m, k_, k_);
        mbar.setZero();
        for (Index i = 0; i < k_; ++i) mbar(i, i) = -double(n_) / l[i * k_ + i];
      }
      const double* fac = sigma_.is_param ? l : l_.data();
      double lp = -double(n_) * double(k_) * math::kHalfLog2Pi;
      for (Index i = 0; i < k_; ++i) lp -= double(n_) * std::log(fac[i * k_ + i]);
      for (Index n = 0; n < n_; ++n) {
        for (Index i = 0; i < k_; ++i) {  // z = L^-1 (y_n - mu_n)
          const Index e = n * k_ + i;
          double acc = y_.value(b, e, s) - mu_.value(b, mu_index(i, e), s);
          for (Index j = 0; j < i; ++j) acc -= fac[i * k_ + j] * z[j];
          z[i] = acc / fac[i * k_ + i];
        }
        lp -= 0.5 * Eigen::Map<const Eigen::VectorXd>(z, k_).squaredNorm();
        if (!(y_.is_param || mu_.is_param || sigma_.is_param)) continue;
        for (Index i = k_ - 1; i >= 0; --i) {  // w = L^-T z
          double acc = z[i];
          for (Index j = i + 1; j < k_; ++j) acc -= fac[j * k_ + i] * w[j];
          w[i] = acc / fac[i * k_ + i];
        }
        if (sigma_.is_param)
          for (Index i = 0; i < k_; ++i)
            Eigen::Map<Eigen::VectorXd>(m + i * k_, i + 1) += w[i] * Eigen::Map<const Eigen::VectorXd>(z, i + 1);
        for (Index i = 0; i < k_; ++i) {
          const Index e = n * k_ + i;
          if (y_.is_param) y_.add_grad(b, e, s, -w[i]);
          if (mu_.is_param) mu_.add_grad(b, mu_index(i, e), s, w[i]);
        }
      }
      b.lp[s] += lp;
      if (sigma_.is_param) {
        dense::cholesky_adjoint_in_place(l, m, k_);
        dense::add_symmetric_gradient(m, b.grad + s * b.ld + sigma_.row, k_);
      }
    }
  }

 private:
  Index mu_index(Index i, Index e) const { return mu_scalar_ ? 0 : mu_shared_ ? i : e; }

  // Data Sigma: symmetric (to 1e-8 of sqrt(Sigma_ii Sigma_jj), the scale a covariance's (i, j)
  // element lives on) and positive-definite, factored once.
  void factor_data() {
    const Vector& a = sigma_.data;
    for (Index i = 0; i < k_; ++i)
      if (!(a[i * k_ + i] > 0.0) || !std::isfinite(a[i * k_ + i]))
        throw std::invalid_argument("input 'Sigma' must be a covariance matrix (symmetric positive-definite), got " +
                                    at("Sigma", i, i) + " = " + format_number(a[i * k_ + i]));
    for (Index i = 0; i < k_; ++i)
      for (Index j = 0; j < i; ++j) {
        const double x = a[i * k_ + j], y = a[j * k_ + i];
        if (!(std::abs(x - y) <= 1e-8 * std::sqrt(a[i * k_ + i] * a[j * k_ + j])))
          throw std::invalid_argument("input 'Sigma' must be symmetric, got " + at("Sigma", i, j) + " = " +
                                      format_number(x) + " but " + at("Sigma", j, i) + " = " + format_number(y));
      }
    l_.resize(k_ * k_);
    for (Index i = 0; i < k_; ++i)
      for (Index j = 0; j <= i; ++j) l_[i * k_ + j] = 0.5 * (a[i * k_ + j] + a[j * k_ + i]);
    if (!dense::cholesky_in_place(l_.data(), k_))
      throw std::invalid_argument("input 'Sigma' must be positive-definite (its Cholesky factorisation fails)");
  }

  Operand y_, mu_, sigma_;
  Vector l_;  // the factor of a data Sigma (row-major K x K)
  Index k_ = 0, n_ = 1;
  bool mu_shared_ = true, mu_scalar_ = false;
};

}  // namespace

void register_multi_normal(KernelRegistry& r) {
  r.add({"multi_normal",
         "MultiNormal(y | mu, Sigma) for a covariance matrix Sigma (factored per draw if a parameter)",
         {{"y", Support::Real, false, std::nullopt, "variate (K,) or (N, K)"},
          {"mu", Support::Real, false, 0.0, "mean (K,), y's shape, or a scalar"},
          {"Sigma", Support::Real, false, std::nullopt, "covariance matrix (K, K), symmetric positive-definite"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<MultiNormal>(std::move(ops[0]), std::move(ops[1]), std::move(ops[2]));
         }});
}

}  // namespace fastvi::kernels
