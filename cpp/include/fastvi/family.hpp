// Gaussian variational families q(zeta) = Normal(mu, L L^T) in the unconstrained space.
//
// Every family draws a batch as zeta = mu + L eps (eps: D x S standard normals) and turns the log
// density gradient g = d log p / d zeta (D x S) into a reparameterised ELBO gradient, one of
//   closed-form entropy:  d/d mu = mean_s g_s,   d/d L = tril(g eps^T) / S + d H(q) / d L
//   sticking the landing (Roeder et al. 2017): the same with g replaced by g + L^-T eps, the
//     path derivative of -log q, and no entropy term. Both are unbiased; STL has zero variance
//     when q equals the posterior, so the iterates settle far more tightly near the optimum.
// Scales are stored as logs (sigma = exp(omega)), so a collapsing scale drives omega towards
// -inf with a constant entropy gradient of 1: it can underflow to zero but never produce NaN.
#pragma once

#include <memory>
#include <string>

#include "fastvi/precondition.hpp"
#include "fastvi/types.hpp"

namespace fastvi {

enum class GradientEstimator { StickingTheLanding, ClosedFormEntropy };

class GaussianFamily {
 public:
  explicit GaussianFamily(Index dim) : dim_(dim) {}
  virtual ~GaussianFamily() = default;

  virtual std::string name() const = 0;
  Index dim() const { return dim_; }
  virtual Index num_params() const = 0;

  // phi for mean `mean` and every marginal sd equal to `scale`.
  virtual void initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const = 0;
  // zeta = mu + L eps for every column of eps.
  virtual void draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                    Eigen::Ref<Matrix> zeta) = 0;
  // grad_phi = an estimate of d ELBO / d phi, given g = d log p / d zeta at zeta = draw(eps).
  virtual void elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                             const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                             Eigen::Ref<Vector> grad_phi) = 0;
  // Closed-form entropy of q.
  virtual double entropy(const Eigen::Ref<const Vector>& phi) const = 0;
  virtual Matrix covariance(const Eigen::Ref<const Vector>& phi) const = 0;
  // Turns phi for q(u) into phi for q(zeta), zeta = shift + C u (see precondition.hpp). Throws
  // std::invalid_argument if the family cannot represent the result (a full C for mean-field).
  virtual void unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const = 0;
  // Prepares scratch space for batches of `draws` columns.
  virtual void reserve(Index draws) { (void)draws; }

  Vector mean(const Eigen::Ref<const Vector>& phi) const { return phi.head(dim_); }

 protected:
  // Entropy of a D-dimensional Gaussian whose Cholesky factor has log-diagonal `log_diag`.
  double gaussian_entropy(const Eigen::Ref<const Vector>& log_diag) const;

 private:
  Index dim_;
};

// Independent normals: phi = [mu (D), omega (D)], sd = exp(omega).
class MeanFieldGaussian final : public GaussianFamily {
 public:
  using GaussianFamily::GaussianFamily;
  std::string name() const override { return "meanfield"; }
  Index num_params() const override { return 2 * dim(); }
  void initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const override;
  void draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps, Eigen::Ref<Matrix> zeta) override;
  void elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                     const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                     Eigen::Ref<Vector> grad_phi) override;
  double entropy(const Eigen::Ref<const Vector>& phi) const override;
  Matrix covariance(const Eigen::Ref<const Vector>& phi) const override;
  void unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const override;
};

// Full covariance through a lower-triangular Cholesky factor L:
// phi = [mu (D), L (D x D, column-major)] with L's diagonal stored as log values and its upper
// triangle unused (always zero).
class FullRankGaussian final : public GaussianFamily {
 public:
  using GaussianFamily::GaussianFamily;
  std::string name() const override { return "fullrank"; }
  Index num_params() const override { return dim() + dim() * dim(); }
  void initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const override;
  void draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps, Eigen::Ref<Matrix> zeta) override;
  void elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                     const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                     Eigen::Ref<Vector> grad_phi) override;
  double entropy(const Eigen::Ref<const Vector>& phi) const override;
  Matrix covariance(const Eigen::Ref<const Vector>& phi) const override;
  void unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const override;
  void reserve(Index draws) override;

  // The Cholesky factor with its diagonal exponentiated.
  Matrix cholesky(const Eigen::Ref<const Vector>& phi) const;

 private:
  Matrix chol_;   // scratch: L for the current phi
  Matrix g_path_; // scratch: g + L^-T eps (sticking the landing)
};

// "meanfield" or "fullrank"; throws std::invalid_argument otherwise.
std::unique_ptr<GaussianFamily> make_family(const std::string& name, Index dim);

}  // namespace fastvi
