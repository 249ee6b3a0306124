// Gaussian variational families q(zeta) = Normal(mu, Sigma) in the unconstrained space.
//
// Every family draws a batch as zeta = mu + T eps, where eps (noise_dim() x S) holds standard
// normals and T is D x noise_dim(): the Cholesky factor L (D x D) for the mean-field and full-rank
// families, [diag(d), B] (D x (D + r)) for the low-rank one. It turns the log density gradient
// g = d log p / d zeta (D x S) into a reparameterised ELBO gradient, one of
//   closed-form entropy:  d/d mu = mean_s g_s,   d/d T = g eps^T / S (lower triangle, for L) + d H(q) / d T
//   sticking the landing (Roeder et al. 2017): the same with g replaced by g + Sigma^-1 (zeta - mu)
//     (= g + L^-T eps for a square factor), the path derivative of -log q, and no entropy term.
//     Both are unbiased; STL has zero variance when q equals the posterior, so the iterates settle
//     far more tightly near the optimum.
// Scales are stored as logs (sigma = exp(omega)), so a collapsing scale drives omega towards
// -inf with a constant entropy gradient of 1: it can underflow to zero but never produce NaN.
#pragma once

#include <Eigen/Cholesky>
#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
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
  // A copy with its own scratch space (for threads that draw from one q at once).
  virtual std::unique_ptr<GaussianFamily> clone() const = 0;
  Index dim() const { return dim_; }
  virtual Index num_params() const = 0;
  // Rows of the noise eps that draw() consumes: D, or D + r for the low-rank family.
  virtual Index noise_dim() const { return dim_; }

  // phi for mean `mean` and every marginal sd equal to `scale`.
  virtual void initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const = 0;
  // zeta = mu + T eps for every column of eps (noise_dim() x S).
  virtual void draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                    Eigen::Ref<Matrix> zeta) = 0;
  // grad_phi = an estimate of d ELBO / d phi, given g = d log p / d zeta at zeta = draw(eps).
  // elbo_gradient and entropy_estimate must follow draw() with the same phi and eps: families keep
  // per-phi work (factors, solves) from draw() in their scratch space.
  virtual void elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                             const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                             Eigen::Ref<Vector> grad_phi) = 0;
  // Closed-form entropy of q.
  virtual double entropy(const Eigen::Ref<const Vector>& phi) const = 0;
  // The mean over the draws of -log q(zeta_s), zeta = draw(phi, eps): an unbiased estimate of the
  // entropy whose fluctuations cancel those of log p(zeta_s) when q is close to p (exactly, when p
  // is Gaussian and q equals it). The default is right for a square factor T = L:
  //   -log q(zeta_s) = log det L + D/2 log(2 pi) + |eps_s|^2 / 2 = entropy - D/2 + |eps_s|^2 / 2.
  virtual double entropy_estimate(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps);
  // log q(zeta_s) for every draw zeta_s = draw(phi, eps_s), column s of eps: the density of q in
  // the unconstrained space, from eps (exact, and cheaper than from zeta). Const and independent of
  // draw()'s scratch, so any thread may call it. The default is right for a square factor T = L:
  //   log q(zeta_s) = -|eps_s|^2 / 2 - log det L - D/2 log(2 pi) = -(entropy - D/2) - |eps_s|^2 / 2.
  virtual void log_q(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                     Eigen::Ref<Vector> out) const;
  virtual Matrix covariance(const Eigen::Ref<const Vector>& phi) const = 0;
  // log of q's marginal sd along every coordinate, into `out` (size dim(); no allocation, no D x D
  // matrix: the stopping rule calls it at every window end).
  virtual void log_marginal_sd(const Eigen::Ref<const Vector>& phi, Eigen::Ref<Vector> out) const = 0;
  // Turns phi for q(u) into phi for q(zeta), zeta = shift + C u (see precondition.hpp). Throws
  // std::invalid_argument if the family cannot represent the result (a full C for mean-field).
  virtual void unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const = 0;
  // Prepares scratch space for batches of `draws` columns.
  virtual void reserve(Index draws) { (void)draws; }
  // Replaces phi by the parameters of the same q that are closest to `reference`. Iterate
  // averaging (run_fit) averages phi, which is only meaningful if nearby iterates represent q the
  // same way: true for the mean-field and full-rank families (phi determines q uniquely: nothing to
  // do), not for the low-rank one, whose q is unchanged by B -> B Q for every orthogonal Q.
  virtual void align(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& reference) {
    (void)phi;
    (void)reference;
  }
  // Whether align() does anything (run_fit skips it, and the copies it needs, otherwise).
  virtual bool needs_alignment() const { return false; }

  Vector mean(const Eigen::Ref<const Vector>& phi) const { return phi.head(dim_); }

 protected:
  // Entropy of a D-dimensional Gaussian whose Cholesky factor's log-diagonal sums to sum_log_diag.
  double gaussian_entropy(double sum_log_diag) const;
  // 0.5 log(exp(2 w) + b2): the log sd of a coordinate whose variance is a diagonal term exp(2 w)
  // plus a sum of squares b2, without overflow for large w.
  static double log_sd_of(double w, double b2) {
    const double m = std::max(w, b2 > 0 ? 0.5 * std::log(b2) : -kInf);
    return m + 0.5 * std::log(std::exp(2 * (w - m)) + b2 * std::exp(-2 * m));
  }

 private:
  Index dim_;
};

// Independent normals: phi = [mu (D), omega (D)], sd = exp(omega).
class MeanFieldGaussian final : public GaussianFamily {
 public:
  std::unique_ptr<GaussianFamily> clone() const override { return std::make_unique<MeanFieldGaussian>(*this); }
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
  void log_marginal_sd(const Eigen::Ref<const Vector>& phi, Eigen::Ref<Vector> out) const override;
  void unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const override;
};

// Full covariance through a lower-triangular Cholesky factor L:
// phi = [mu (D), L (D x D, column-major)] with L's diagonal stored as log values and its upper
// triangle unused (always zero).
class FullRankGaussian final : public GaussianFamily {
 public:
  std::unique_ptr<GaussianFamily> clone() const override { return std::make_unique<FullRankGaussian>(*this); }
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
  void log_marginal_sd(const Eigen::Ref<const Vector>& phi, Eigen::Ref<Vector> out) const override;
  void unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const override;
  void reserve(Index draws) override;

  // The Cholesky factor with its diagonal exponentiated.
  Matrix cholesky(const Eigen::Ref<const Vector>& phi) const;

 private:
  Matrix chol_;    // scratch: L for the current phi
  Matrix g_path_;  // scratch: g + L^-T eps (sticking the landing)
};

// Diagonal plus low rank: Sigma = diag(d)^2 + B B^T with d = exp(omega) (D) and B (D x r),
// phi = [mu (D), omega (D), B (D x r, column-major)], drawn as zeta = mu + d o eps1 + B eps2 from
// D + r noise dimensions eps = [eps1 (D); eps2 (r)]. Everything that needs Sigma^-1 or det Sigma
// goes through the whitened factor A = diag(d)^-1 B and the r x r matrix C = I + A^T A (Woodbury
// and the matrix determinant lemma):
//   Sigma^-1 = diag(d)^-1 (I - A C^-1 A^T) diag(d)^-1,   log det Sigma = 2 sum(omega) + log det C,
// so a step costs O(D r (r + S)) and never forms a D x D matrix.
class LowRankGaussian final : public GaussianFamily {
 public:
  std::unique_ptr<GaussianFamily> clone() const override { return std::make_unique<LowRankGaussian>(*this); }
  LowRankGaussian(Index dim, Index rank);  // 1 <= rank <= dim
  std::string name() const override { return "lowrank"; }
  Index rank() const { return rank_; }
  Index num_params() const override { return (2 + rank_) * dim(); }
  Index noise_dim() const override { return dim() + rank_; }
  // B starts small, not zero; see lowrank.cpp.
  void initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const override;
  void draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps, Eigen::Ref<Matrix> zeta) override;
  void elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                     const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                     Eigen::Ref<Vector> grad_phi) override;
  double entropy(const Eigen::Ref<const Vector>& phi) const override;
  double entropy_estimate(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps) override;
  // eps has D + r rows; see lowrank.cpp for the Woodbury form.
  void log_q(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
             Eigen::Ref<Vector> out) const override;
  Matrix covariance(const Eigen::Ref<const Vector>& phi) const override;
  void log_marginal_sd(const Eigen::Ref<const Vector>& phi, Eigen::Ref<Vector> out) const override;
  // Needs a diagonal C: C (diag(d)^2 + B B^T) C = diag(C d)^2 + (C B)(C B)^T.
  void unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const override;
  void reserve(Index draws) override;
  // B -> B Q with the orthogonal Q that brings B closest to reference's B (orthogonal Procrustes).
  void align(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& reference) override;
  bool needs_alignment() const override { return true; }

 private:
  // d_, a_ and llt_ for phi.
  void factorise(const Eigen::Ref<const Vector>& phi);

  Index rank_;
  // Scratch, sized by the constructor and reserve(): draw() and elbo_gradient() allocate nothing
  // (up to r ~ 300, above which Eigen's blocked Cholesky puts its panels on the heap); neither
  // does align() up to r = kSmallRank.
  Vector d_;                // exp(omega)
  Matrix a_;                // A = diag(d)^-1 B (D x r)
  Matrix c_;                // C = I + A^T A (r x r)
  Eigen::LLT<Matrix> llt_;  // C = L L^T
  Matrix v_;                // r x S: L^-1 (A^T eps1 - eps2) from draw(); C^-1 (...) after an STL gradient
  double v_sq_ = 0.0;       // |L^-1 (A^T eps1 - eps2)|^2 summed over the draws of the last draw()
  Vector w_;                // D, one draw at a time: diag(d) Sigma^-1 (zeta_s - mu), then g_s + Sigma^-1 (zeta_s - mu)
  Matrix at_;               // r x D: L^-1 A^T, then C^-1 A^T (closed-form entropy gradient)
  // align(): M = B^T B_reference, M^T M and its eigendecomposition, U, Q (r x r) and B Q (D x r).
  // Up to rank kSmallRank the eigensolver's storage is fixed-size (inside this object), so align()
  // allocates nothing; above it, Eigen's solver allocates one r-vector per call.
  static constexpr int kSmallRank = 32;
  using SmallMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kSmallRank, kSmallRank>;
  template <class Solver>
  void align_with(Eigen::Ref<Vector> phi, const Solver& eig);
  Matrix m_, mtm_, u_, q_, bq_;
  Eigen::SelfAdjointEigenSolver<SmallMatrix> eig_small_;
  Eigen::SelfAdjointEigenSolver<Matrix> eig_;
};

// "meanfield", "fullrank" or "lowrank" (with 1 <= rank <= dim; rank must be 0, "not given", for
// the others); throws std::invalid_argument otherwise.
std::unique_ptr<GaussianFamily> make_family(const std::string& name, Index dim, Index rank = 0);

}  // namespace fastvi
