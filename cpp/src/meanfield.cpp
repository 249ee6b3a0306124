// MeanFieldGaussian: independent normals, phi = [mu (D), omega (D)].
#include "fastvi/family.hpp"

#include <cmath>
#include <stdexcept>

namespace fastvi {

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
  return gaussian_entropy(phi.tail(dim()).sum());
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

void MeanFieldGaussian::log_marginal_sd(const Eigen::Ref<const Vector>& phi, Eigen::Ref<Vector> out) const {
  out = phi.segment(dim(), dim());  // phi = [mu, omega], sd = exp(omega)
}

}  // namespace fastvi
