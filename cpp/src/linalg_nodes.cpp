// Linear-algebra nodes for Gaussian processes and learned covariances: exp_quad_cov, add_diag and
// cholesky (see expression.hpp). Every matrix is one draw's run of rows, row-major, like every
// other (N, N) block of the value matrix; each node works a draw at a time and allocates nothing.
#include <cmath>
#include <stdexcept>
#include <string>

#include "dense_cholesky.hpp"
#include "fastvi/expression.hpp"
#include "fastvi/format.hpp"

namespace fastvi {
namespace {

using ArrayMap = Eigen::Map<Eigen::ArrayXd>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXd>;

// A scalar operand's value in draw s (data: the same for every draw).
double scalar_value(const Operand& op, const Matrix& value, Index s) {
  return op.is_param ? value(op.row, s) : op.data[0];
}

// K[i, j] = alpha^2 exp(-d2[i, j] / (2 rho^2)), d2 the squared distances computed once here.
// Only the lower triangle is computed and then mirrored: half the exps, and K exactly symmetric.
//   dK/dalpha = 2 K / alpha (0 at alpha = 0, where K = 0 too), dK/drho = K d2 / rho^3.
class ExpQuadCov final : public Node {
 public:
  ExpQuadCov(RowMatrix d2, Operand alpha, Operand rho)
      : d2_(std::move(d2)), alpha_(std::move(alpha)), rho_(std::move(rho)), n_(d2_.rows()) {
    size = n_ * n_;
  }

  void forward(Matrix& value) const override {
    for (Index s = 0; s < value.cols(); ++s) {
      const double alpha = scalar_value(alpha_, value, s), rho = scalar_value(rho_, value, s);
      const double a2 = alpha * alpha, scale = 0.5 / (rho * rho);
      double* k = value.col(s).data() + row;
      for (Index i = 0; i < n_; ++i) {
        ArrayMap ki(k + i * n_, i + 1);
        // d2 * scale is NaN for d2 = 0 and rho = 0 (0 * inf): the diagonal is alpha^2 at any rho
        ki = a2 * (-(d2_.row(i).head(i + 1).array() * scale)).exp();
        ki[i] = a2;
        for (Index j = 0; j < i; ++j) k[j * n_ + i] = ki[j];
      }
    }
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    if (!alpha_.is_param && !rho_.is_param) return;
    for (Index s = 0; s < value.cols(); ++s) {
      const ConstArrayMap k(value.col(s).data() + row, size), g(grad.col(s).data() + row, size);
      const ConstArrayMap d2(d2_.data(), size);
      if (alpha_.is_param) {
        const double alpha = value(alpha_.row, s);
        if (alpha != 0.0) grad(alpha_.row, s) += 2.0 / alpha * (g * k).sum();
      }
      if (rho_.is_param) {
        const double rho = value(rho_.row, s), t = (g * k * d2).sum();
        if (t != 0.0) grad(rho_.row, s) += t / (rho * rho * rho);  // (t is 0 wherever rho is 0)
      }
    }
  }

 private:
  RowMatrix d2_;
  Operand alpha_, rho_;
  Index n_;
};

// out = K + diag(d), K an (N, N) operand, d a scalar or an (N,) operand.
class AddDiag final : public Node {
 public:
  AddDiag(Operand k, Operand d, Index n) : k_(std::move(k)), d_(std::move(d)), n_(n) { size = n * n; }

  void forward(Matrix& value) const override {
    for (Index s = 0; s < value.cols(); ++s) {
      double* out = value.col(s).data() + row;
      if (k_.is_param)
        ArrayMap(out, size) = ConstArrayMap(value.col(s).data() + k_.row, size);
      else
        ArrayMap(out, size) = k_.data.array();
      for (Index i = 0; i < n_; ++i) out[i * n_ + i] += diag(value, s, i);
    }
  }

  void backward(const Matrix&, Matrix& grad) const override {
    for (Index s = 0; s < grad.cols(); ++s) {
      const double* g = grad.col(s).data() + row;
      if (k_.is_param) ArrayMap(grad.col(s).data() + k_.row, size) += ConstArrayMap(g, size);
      if (d_.is_param)
        for (Index i = 0; i < n_; ++i) grad(d_.row + (d_.is_scalar() ? 0 : i), s) += g[i * n_ + i];
    }
  }

 private:
  double diag(const Matrix& value, Index s, Index i) const {
    const Index e = d_.is_scalar() ? 0 : i;
    return d_.is_param ? value(d_.row + e, s) : d_.data[e];
  }

  Operand k_, d_;
  Index n_;
};

// L = cholesky(sym(K)), sym(K) = (K + K^T) / 2: the lower-triangular factor with a positive
// diagonal, its upper triangle 0. Reading the symmetric part (not one triangle) makes the node a
// function of every element of K whose gradient is symmetric, so finite differences in any single
// element agree with it, whichever way K was built; for a symmetric K (every covariance) it is
// the plain Cholesky factor. A draw whose sym(K) is not positive-definite (or not finite) gets
// NaN in all of L: the factors that read L give that draw a NaN log density, which the fit skips
// like any other invalid draw, and its gradient is NaN too.
//
// Reverse pass: dense::cholesky_adjoint_in_place (Murray 2016's unblocked algorithm), in place in
// this node's own gradient rows (nothing reads them after its backward pass), so the node needs no
// scratch; the gradient with respect to sym(K)'s lower triangle is then split evenly between
// K[i, j] and K[j, i].
class Cholesky final : public Node {
 public:
  Cholesky(Operand k, Index n) : k_(std::move(k)), n_(n) { size = n * n; }

  void forward(Matrix& value) const override {
    for (Index s = 0; s < value.cols(); ++s) {
      const double* a = value.col(s).data() + k_.row;
      double* l = value.col(s).data() + row;
      for (Index i = 0; i < n_; ++i)
        for (Index j = 0; j <= i; ++j) l[i * n_ + j] = 0.5 * (a[i * n_ + j] + a[j * n_ + i]);
      if (!dense::cholesky_in_place(l, n_)) ArrayMap(l, size).setConstant(kNaN);
    }
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    for (Index s = 0; s < value.cols(); ++s) {
      double* b = grad.col(s).data() + row;  // Lbar, then d lp / d sym(K) (its lower triangle)
      dense::cholesky_adjoint_in_place(value.col(s).data() + row, b, n_);
      dense::add_symmetric_gradient(b, grad.col(s).data() + k_.row, n_);
    }
  }

 private:
  Operand k_;
  Index n_;
};

void require_scalar(const Operand& op, const char* what) {
  if (!op.is_scalar())
    throw std::invalid_argument(std::string("exp_quad_cov: ") + what + " must be a scalar, got shape " +
                                format_shape(op.shape));
  if (!op.is_param && !std::isfinite(op.data[0]))
    throw std::invalid_argument(std::string("exp_quad_cov: ") + what + " must be finite");
}

}  // namespace

std::unique_ptr<Node> make_exp_quad_cov(const RowMatrix& x, Operand alpha, Operand rho) {
  if (!alpha.is_param && !rho.is_param)
    throw std::invalid_argument("exp_quad_cov: an expression needs alpha or rho to be a parameter");
  require_scalar(alpha, "alpha");
  require_scalar(rho, "rho");
  if (x.rows() < 1) throw std::invalid_argument("exp_quad_cov: x needs at least one point");
  if (!x.allFinite()) throw std::invalid_argument("exp_quad_cov: x contains NaN or inf");
  // Squared distances summed coordinate by coordinate (not |a|^2 + |b|^2 - 2 a.b, which cancels).
  const Index n = x.rows();
  RowMatrix d2(n, n);
  for (Index i = 0; i < n; ++i)
    for (Index j = 0; j <= i; ++j) d2(i, j) = d2(j, i) = (x.row(i) - x.row(j)).squaredNorm();
  return std::make_unique<ExpQuadCov>(std::move(d2), std::move(alpha), std::move(rho));
}

std::unique_ptr<Node> make_add_diag(Operand k, Operand d) {
  if (!k.is_param && !d.is_param) throw std::invalid_argument("add_diag: an expression needs a parameter input");
  if (k.shape.size() != 2 || k.shape[0] != k.shape[1])
    throw std::invalid_argument("add_diag: K must be square (N, N), got " + format_shape(k.shape));
  const Index n = k.shape[0];
  if (!d.is_scalar() && d.shape != std::vector<Index>{n})
    throw std::invalid_argument("add_diag: d must be a scalar or have shape (" + std::to_string(n) + ",), got " +
                                format_shape(d.shape));
  for (const Operand* op : {&k, &d})
    if (!op->is_param && (op->data.size() != op->size() || !op->data.allFinite()))
      throw std::invalid_argument("add_diag: data contains NaN or inf");
  return std::make_unique<AddDiag>(std::move(k), std::move(d), n);
}

std::unique_ptr<Node> make_cholesky(Operand k) {
  if (!k.is_param) throw std::invalid_argument("cholesky needs a parameter or expression input");
  if (k.shape.size() != 2 || k.shape[0] != k.shape[1])
    throw std::invalid_argument("cholesky: K must be square (N, N), got " + format_shape(k.shape));
  const Index n = k.shape[0];
  return std::make_unique<Cholesky>(std::move(k), n);
}

}  // namespace fastvi
