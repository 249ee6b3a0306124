#include "fastvi/family.hpp"

#include <cmath>
#include <stdexcept>

namespace fastvi {

namespace {
constexpr double kHalfLog2PiE = 1.4189385332046727;  // (1 + log(2 pi)) / 2
}

double GaussianFamily::gaussian_entropy(const Eigen::Ref<const Vector>& log_diag) const {
  return double(dim_) * kHalfLog2PiE + log_diag.sum();
}

// ---- mean-field -------------------------------------------------------------------------------

void MeanFieldGaussian::initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const {
  phi.head(dim()) = mean;
  phi.tail(dim()).setConstant(std::log(scale));
}

void MeanFieldGaussian::draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                             Eigen::Ref<Matrix> zeta) {
  const Index d = dim();
  for (Index i = 0; i < d; ++i) {
    const double mu = phi[i], sigma = std::exp(phi[d + i]);
    for (Index s = 0; s < eps.cols(); ++s) zeta(i, s) = mu + sigma * eps(i, s);
  }
}

void MeanFieldGaussian::elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                                      const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                                      Eigen::Ref<Vector> grad_phi) {
  const Index d = dim(), draws = eps.cols();
  const double inv = 1.0 / double(draws);
  const bool stl = estimator == GradientEstimator::StickingTheLanding;
  for (Index i = 0; i < d; ++i) {
    const double sigma = std::exp(phi[d + i]);
    double g_sum = 0.0, g_eps = 0.0, eps_sum = 0.0, eps_sq = 0.0;
    for (Index s = 0; s < draws; ++s) {
      g_sum += g(i, s);
      g_eps += g(i, s) * eps(i, s);
      eps_sum += eps(i, s);
      eps_sq += eps(i, s) * eps(i, s);
    }
    // d zeta / d mu = 1, d zeta / d omega = sigma * eps. STL adds the path derivative of -log q,
    // eps / sigma, to each draw's g: + mean(eps) / sigma for mu and + mean(eps^2) for omega
    // (written without dividing by sigma, which may have underflowed); the closed-form entropy
    // estimator adds d H / d omega = 1 instead.
    grad_phi[i] = g_sum * inv + (stl ? eps_sum * inv / sigma : 0.0);
    grad_phi[d + i] = g_eps * inv * sigma + (stl ? eps_sq * inv : 1.0);
  }
}

double MeanFieldGaussian::entropy(const Eigen::Ref<const Vector>& phi) const {
  return gaussian_entropy(phi.tail(dim()));
}

void MeanFieldGaussian::unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const {
  if (!p.is_diagonal()) throw std::invalid_argument("the mean-field family needs a diagonal preconditioner");
  const Index d = dim();
  phi.head(d) = p.shift + p.diagonal.cwiseProduct(phi.head(d));
  phi.tail(d) += p.diagonal.array().log().matrix();  // sd scales by C_ii
}

Matrix MeanFieldGaussian::covariance(const Eigen::Ref<const Vector>& phi) const {
  return (2.0 * phi.tail(dim()).array()).exp().matrix().asDiagonal();
}

// ---- full-rank --------------------------------------------------------------------------------

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
  chol_.resize(dim(), dim());
  g_path_.resize(dim(), draws);
}

void FullRankGaussian::draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                            Eigen::Ref<Matrix> zeta) {
  const Index d = dim();
  Eigen::Map<const Matrix> stored(phi.data() + d, d, d);
  chol_.triangularView<Eigen::StrictlyLower>() = stored.triangularView<Eigen::StrictlyLower>();
  for (Index i = 0; i < d; ++i) chol_(i, i) = std::exp(stored(i, i));
  zeta.noalias() = chol_.triangularView<Eigen::Lower>() * eps;
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
    chol_.triangularView<Eigen::Lower>().transpose().solveInPlace(g_path_);
    g_path_ += g;
  }
  const Eigen::Ref<const Matrix> gg = stl ? Eigen::Ref<const Matrix>(g_path_) : g;
  grad_phi.head(d) = gg.rowwise().sum() * inv;
  Eigen::Map<Matrix> grad_l(grad_phi.data() + d, d, d);
  // Only the lower triangle of g eps^T is needed: one triangular GEMM into the lower half.
  grad_l.setZero();
  grad_l.triangularView<Eigen::Lower>() += inv * gg * eps.transpose();
  Eigen::Map<const Matrix> stored(phi.data() + d, d, d);
  const double entropy_grad = stl ? 0.0 : 1.0;
  for (Index i = 0; i < d; ++i) grad_l(i, i) = grad_l(i, i) * std::exp(stored(i, i)) + entropy_grad;
}

double FullRankGaussian::entropy(const Eigen::Ref<const Vector>& phi) const {
  const Index d = dim();
  return gaussian_entropy(Eigen::Map<const Matrix>(phi.data() + d, d, d).diagonal());
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

std::unique_ptr<GaussianFamily> make_family(const std::string& name, Index dim) {
  if (dim < 1) throw std::invalid_argument("the model has no parameters to fit");
  if (name == "meanfield") return std::make_unique<MeanFieldGaussian>(dim);
  if (name == "fullrank") return std::make_unique<FullRankGaussian>(dim);
  throw std::invalid_argument("family must be 'meanfield' or 'fullrank', got '" + name + "'");
}

}  // namespace fastvi
