// lkj_corr_cholesky(L | eta): the LKJ density of a correlation matrix Omega = L L^T, det(Omega)^(eta-1)
// / c_K(eta), expressed in its Cholesky factor L (Stan's lkj_corr_cholesky_lpdf): with the Jacobian
// of Omega = L L^T, and k counted from 1,
//   log p = sum_{k=2..K} (K - k + 2 eta - 2) log L_kk - log c_K(eta)
// where, from Lewandowski, Kurowicka and Joe (2009), eq. 16, with b_k = eta + (K - k - 1) / 2,
//   log c_K(eta) = sum_{k=1..K-1} [(2 eta - 2 + K - k) (K - k) log 2 + (K - k) log B(b_k, b_k)]
// (c_2 = 2^(2 eta - 1) B(eta, eta), the marginal of the one correlation; c_3(1) = pi^2 / 2, the
// volume of the 3 x 3 correlation matrices). Partials:
//   d/d L_kk = (K - k + 2 eta - 2) / L_kk
//   d/d eta  = 2 sum_{k>=2} log L_kk - sum_{k<K} (K - k) [2 log 2 + 2 digamma(b_k) - 2 digamma(2 b_k)]
// L (K, K) should come from transform="cholesky_corr"; data L is checked to be one (unit rows,
// positive diagonal, zero upper triangle). eta is a scalar.
#include <cmath>
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

class LkjCorrCholesky final : public Kernel {
 public:
  LkjCorrCholesky(Operand l, Operand eta) : l_(std::move(l)), eta_(std::move(eta)) {
    if (l_.shape.size() != 2 || l_.shape[0] != l_.shape[1] || l_.shape[0] < 1)
      throw std::invalid_argument("input 'L' must be a square (K, K) matrix, got shape " + format_shape(l_.shape));
    k_ = l_.shape[0];
    if (!eta_.is_scalar())
      throw std::invalid_argument("input 'eta' must be a scalar, got shape " + format_shape(eta_.shape));
    if (!l_.is_param) check_data_factor();
  }

  void evaluate(const Batch& b) const override {
    const double kd = double(k_);
    for (Index s = 0; s < b.draws; ++s) {
      const double eta = eta_.value(b, 0, s);
      double lp = 0.0, sum_log_diag = 0.0;
      for (Index i = 1; i < k_; ++i) {  // k = i + 1
        const double d = l_.value(b, i * k_ + i, s), w = kd - double(i + 1) + 2.0 * eta - 2.0;
        const double log_d = std::log(d);
        lp += w * log_d;
        sum_log_diag += log_d;
        if (l_.is_param) b.grad[s * b.ld + l_.row + i * k_ + i] += w / d;
      }
      double log_c = 0.0, d_log_c = 0.0;
      for (Index k = 1; k < k_; ++k) {
        const double m = kd - double(k), bk = eta + (m - 1.0) / 2.0;
        log_c += (2.0 * eta - 2.0 + m) * m * math::kLog2 + m * (2.0 * math::log_gamma(bk) - math::log_gamma(2.0 * bk));
        if (eta_.is_param) d_log_c += m * (2.0 * math::kLog2 + 2.0 * math::digamma(bk) - 2.0 * math::digamma(2.0 * bk));
      }
      b.lp[s] += lp - log_c;
      if (eta_.is_param) b.grad[s * b.ld + eta_.row] += 2.0 * sum_log_diag - d_log_c;
    }
  }

 private:
  // A data L must be the Cholesky factor of a correlation matrix: lower triangular with a positive
  // diagonal and rows of unit length (to 1e-8).
  void check_data_factor() const {
    for (Index i = 0; i < k_; ++i) {
      double norm2 = 0.0;
      for (Index j = 0; j < k_; ++j) {
        const double v = l_.data[i * k_ + j];
        if (j > i && v != 0.0)
          throw std::invalid_argument("input 'L' must be lower triangular, got L[" + std::to_string(i) + ", " +
                                      std::to_string(j) + "] = " + format_number(v));
        norm2 += v * v;
      }
      if (!(l_.data[i * k_ + i] > 0.0))
        throw std::invalid_argument("input 'L' must have a positive diagonal, got L[" + std::to_string(i) + ", " +
                                    std::to_string(i) + "] = " + format_number(l_.data[i * k_ + i]));
      if (!(std::abs(norm2 - 1.0) <= 1e-8))
        throw std::invalid_argument(
            "input 'L' must have rows of unit length (the Cholesky factor of a correlation "
            "matrix), but row " +
            std::to_string(i) + " has squared length " + format_number(norm2));
    }
  }

  Operand l_, eta_;
  Index k_ = 0;
};

}  // namespace

void register_lkj_corr_cholesky(KernelRegistry& r) {
  r.add({"lkj_corr_cholesky",
         "LKJ(eta) on the correlation matrix L L^T, as a density of its Cholesky factor L",
         {{"L", Support::Real, false, std::nullopt, "Cholesky factor of a correlation matrix (K, K)"},
          {"eta", Support::Positive, false, std::nullopt, "shape (scalar); 1 is uniform over correlation matrices"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<LkjCorrCholesky>(std::move(ops[0]), std::move(ops[1]));
         }});
}

}  // namespace fastvi::kernels
