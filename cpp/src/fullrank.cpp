// FullRankGaussian: phi = [mu (D), L (D x D, column-major, log diagonal)].
#include "fastvi/family.hpp"

#include <cmath>

#include "fastvi/triangular.hpp"

namespace fastvi {

void FullRankGaussian::initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const {
  const Index d = dim();
  phi.head(d) = mean;
  Eigen::Map<Matrix> l(phi.data() + d, d, d);
  l.setZero();
  l.diagonal().setConstant(std::log(scale));
}

Matrix FullRankGaussian::cholesky(const Eigen::Ref<const Vector>& phi) const {
  const Index d = dim();
  Matrix l = Eigen::Map<const Matrix>(phi.data() + d, d, d).triangularView<Eigen::StrictlyLower>();
  l.diagonal() = Eigen::Map<const Matrix>(phi.data() + d, d, d).diagonal().array().exp();
  return l;
}

void FullRankGaussian::reserve(Index draws) {
  chol_.setZero(dim(), dim());  // the strict upper triangle is never read
  g_path_.resize(dim(), draws);
}

void FullRankGaussian::draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                            Eigen::Ref<Matrix> zeta) {
  const Index d = dim();
  Eigen::Map<const Matrix> stored(phi.data() + d, d, d);
  chol_.triangularView<Eigen::StrictlyLower>() = stored.triangularView<Eigen::StrictlyLower>();
  for (Index i = 0; i < d; ++i) chol_(i, i) = std::exp(stored(i, i));
  // The blocked product, not chol_.triangularView<Lower>() * eps: Eigen's would put its packing
  // buffers on the heap from D ~ 300 on (triangular.hpp).
  lower_times(chol_, eps, zeta);
  zeta.colwise() += phi.head(d);
}

void FullRankGaussian::elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                                     const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                                     Eigen::Ref<Vector> grad_phi) {
  const Index d = dim(), draws = eps.cols();
  const double inv = 1.0 / double(draws);
  const bool stl = estimator == GradientEstimator::StickingTheLanding;
  if (stl) {
    // g + L^-T eps; chol_ still holds L from draw() for this phi.
    g_path_ = eps;
    lower_transpose_solve_in_place(chol_, g_path_);
    g_path_ += g;
  }
  const Eigen::Ref<const Matrix> gg = stl ? Eigen::Ref<const Matrix>(g_path_) : g;
  grad_phi.head(d) = gg.rowwise().sum() * inv;
  Eigen::Map<Matrix> grad_l(grad_phi.data() + d, d, d);
  // Only the lower triangle of g eps^T is needed: block products into the lower half.
  lower_outer(inv, gg, eps, grad_l);
  Eigen::Map<const Matrix> stored(phi.data() + d, d, d);
  const double entropy_grad = stl ? 0.0 : 1.0;
  for (Index i = 0; i < d; ++i) grad_l(i, i) = grad_l(i, i) * std::exp(stored(i, i)) + entropy_grad;
}

double FullRankGaussian::entropy(const Eigen::Ref<const Vector>& phi) const {
  const Index d = dim();
  // The diagonal of the stored factor is strided: summing it in place avoids a copy per step.
  return gaussian_entropy(Eigen::Map<const Matrix>(phi.data() + d, d, d).diagonal().sum());
}

void FullRankGaussian::unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const {
  const Index d = dim();
  const Matrix c = p.is_diagonal() ? Matrix(p.diagonal.asDiagonal()) : Matrix(p.lower.triangularView<Eigen::Lower>());
  phi.head(d) = p.shift + c * phi.head(d);
  // L_zeta = C L_u is lower-triangular again, with diagonal C_ii L_ii > 0.
  const Matrix l = c * cholesky(phi);
  Eigen::Map<Matrix> stored(phi.data() + d, d, d);
  stored = l.triangularView<Eigen::StrictlyLower>();
  stored.diagonal() = l.diagonal().array().log().matrix();
}

Matrix FullRankGaussian::covariance(const Eigen::Ref<const Vector>& phi) const {
  const Matrix l = cholesky(phi);
  return l * l.transpose();
}

void FullRankGaussian::log_marginal_sd(const Eigen::Ref<const Vector>& phi, Eigen::Ref<Vector> out) const {
  const Index d = dim();
  Eigen::Map<const Matrix> l(phi.data() + d, d, d);  // log diagonal, strict lower triangle
  out.setZero();  // first the squared norms of L's off-diagonal rows, column by column
  for (Index j = 0; j < d; ++j) out.tail(d - j - 1) += l.col(j).tail(d - j - 1).array().square().matrix();
  for (Index i = 0; i < d; ++i) out(i) = log_sd_of(l(i, i), out(i));
}

}  // namespace fastvi
