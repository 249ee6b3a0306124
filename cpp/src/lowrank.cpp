// LowRankGaussian: Sigma = diag(d)^2 + B B^T, phi = [mu (D), omega (D), B (D x r, column-major)].
//
// With A = diag(d)^-1 B, C = I + A^T A = L L^T and a draw zeta - mu = d o e1 + B e2
// = diag(d) (e1 + A e2), Woodbury gives
//   Sigma^-1 (zeta - mu) = diag(d)^-1 w,   w = e1 - A C^-1 v,   v = A^T e1 - e2,
//   (zeta - mu)^T Sigma^-1 (zeta - mu) = |e1|^2 + |e2|^2 - |L^-1 v|^2,
// and for the entropy gradients
//   Sigma^-1 B = diag(d)^-1 A C^-1,   (Sigma^-1)_ii d_i^2 = 1 - |row i of A L^-T|^2.
// The path term w and the omega gradient need no division by d (which may underflow); the mu and
// B gradients divide by d as the mean-field family's mu gradient does.
#include "fastvi/family.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "fastvi/math.hpp"

namespace fastvi {

namespace {

// The initial B is this fraction of the initial sd times a fixed orthonormal pattern; see
// LowRankGaussian::initialise.
constexpr double kInitialFactorShare = 0.1;

}  // namespace

LowRankGaussian::LowRankGaussian(Index dim, Index rank) : GaussianFamily(dim), rank_(rank) {
  if (rank < 1 || rank > dim)
    throw std::invalid_argument("rank must be between 1 and the number of unconstrained parameters (" +
                                std::to_string(dim) + ") for the lowrank family, got " + std::to_string(rank));
  d_.resize(dim);
  a_.resize(dim, rank);
  c_.resize(rank, rank);
  // Sized by a first decomposition: Eigen's size constructors leave the solvers' `info` unset, and
  // copying them is undefined behaviour (UBSan: invalid value for enum ComputationInfo).
  llt_.compute(Matrix::Identity(rank, rank));
  w_.resize(dim);
  at_.resize(rank, dim);
  m_.resize(rank, rank);
  mtm_.resize(rank, rank);
  u_.resize(rank, rank);
  q_.resize(rank, rank);
  bq_.resize(dim, rank);
  if (rank <= kSmallRank)
    eig_small_.compute(SmallMatrix::Identity(rank, rank));
  else
    eig_.compute(Matrix::Identity(rank, rank));
  reserve(1);
}

void LowRankGaussian::reserve(Index draws) { v_.resize(rank_, draws); }

// mu = mean; B = 0.1 scale U with U the first r columns of the orthonormal DCT-II basis
// (u_ik = cos(pi (i + 1/2) k / D), normalised), and d chosen so that every marginal sd is exactly
// `scale`. B must not start at zero: q is the same distribution for B and B Q (Q orthogonal, e.g.
// -I), so the ELBO's gradient with respect to B is exactly zero at B = 0 (a saddle that only the
// gradient noise would push the fit off), and it is G B for some D x D matrix G at any B, so
// columns that start parallel stay parallel and the fit would be stuck at a lower rank.
// Orthonormal columns spread over every coordinate avoid both, with no random numbers, and the
// pattern is small enough (at most 2 % of any marginal variance) not to bias the start. (With
// Adam the size hardly matters: starts of 0.001 to 0.5 times the scale fit equally fast.)
void LowRankGaussian::initialise(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& mean, double scale) const {
  const Index d = dim(), r = rank_;
  phi.head(d) = mean;
  Eigen::Map<Matrix> b(phi.data() + 2 * d, d, r);
  for (Index k = 0; k < r; ++k) {
    const double norm = std::sqrt((k == 0 ? 1.0 : 2.0) / double(d));
    for (Index i = 0; i < d; ++i)
      b(i, k) = kInitialFactorShare * scale * norm * std::cos(math::kPi * (double(i) + 0.5) * double(k) / double(d));
  }
  // Each row of U has squared norm <= (1 + 2 (r - 1)) / D < 2, so the share of the variance left
  // for d^2 is above 1 - 2 * 0.1^2 = 0.98.
  for (Index i = 0; i < d; ++i)
    phi[d + i] = std::log(scale) + 0.5 * std::log1p(-b.row(i).squaredNorm() / (scale * scale));
}

// The products below are matrix-vector products, one draw at a time, and dot products: unlike
// Eigen's matrix-matrix products they never put packing buffers on the heap (which Eigen does
// above 128 KB) nor open OpenMP regions of their own (which Eigen's GEMM does above ~1e5
// multiply-adds, whatever the fit's `threads`). With r << D the level-3 products would gain
// little: one of their dimensions is r.
void LowRankGaussian::factorise(const Eigen::Ref<const Vector>& phi) {
  const Index d = dim();
  Eigen::Map<const Matrix> b(phi.data() + 2 * d, d, rank_);
  d_ = phi.segment(d, d).array().exp();
  for (Index k = 0; k < rank_; ++k)
    for (Index i = 0; i < d; ++i) a_(i, k) = b(i, k) / d_[i];
  for (Index k = 0; k < rank_; ++k)
    for (Index j = k; j < rank_; ++j) c_(j, k) = a_.col(j).dot(a_.col(k)) + (j == k ? 1.0 : 0.0);
  llt_.compute(c_);  // reads the lower triangle; C >= I is positive definite unless phi is not finite
}

void LowRankGaussian::draw(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                           Eigen::Ref<Matrix> zeta) {
  const Index d = dim(), draws = eps.cols();
  if (v_.cols() != draws) reserve(draws);  // no-op in a fit: the estimator reserved its batch size
  factorise(phi);
  Eigen::Map<const Matrix> b(phi.data() + 2 * d, d, rank_);
  for (Index s = 0; s < draws; ++s) {
    const auto e1 = eps.col(s).head(d);
    const auto e2 = eps.col(s).tail(rank_);
    auto z = zeta.col(s);
    z.noalias() = b * e2;
    for (Index i = 0; i < d; ++i) z[i] += phi[i] + d_[i] * e1[i];
    // L^-1 v for the entropy estimate and the STL gradient.
    auto v = v_.col(s);
    v.noalias() = a_.transpose() * e1;
    v -= e2;
    llt_.matrixL().solveInPlace(v);
  }
  v_sq_ = v_.squaredNorm();
}

void LowRankGaussian::elbo_gradient(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                                    const Eigen::Ref<const Matrix>& g, GradientEstimator estimator,
                                    Eigen::Ref<Vector> grad_phi) {
  (void)phi;  // everything this needs of phi, draw() left in d_, a_, llt_ and v_
  const Index d = dim(), r = rank_, draws = eps.cols();
  const double inv = 1.0 / double(draws);
  auto grad_mu = grad_phi.head(d);
  auto grad_omega = grad_phi.segment(d, d);
  Eigen::Map<Matrix> grad_b(grad_phi.data() + 2 * d, d, r);
  grad_phi.setZero();
  // d zeta / d mu = 1, d zeta / d omega_i = d_i e1_i, d zeta / d B_ik = e2_k (in row i).
  if (estimator == GradientEstimator::StickingTheLanding) {
    for (Index s = 0; s < draws; ++s) {
      const auto e1 = eps.col(s).head(d);
      const auto e2 = eps.col(s).tail(r);
      // g' = g + Sigma^-1 (zeta - mu) = g + w / d with w = e1 - A C^-1 v; v_ holds L^-1 v.
      auto v = v_.col(s);
      llt_.matrixU().solveInPlace(v);  // C^-1 v
      w_ = e1;
      w_.noalias() -= a_ * v;
      for (Index i = 0; i < d; ++i) {
        // omega: d_i g'_i e1_i = (d_i g_i + w_i) e1_i, without dividing by d_i.
        grad_omega[i] += (d_[i] * g(i, s) + w_[i]) * e1[i];
        w_[i] = g(i, s) + w_[i] / d_[i];
        grad_mu[i] += w_[i];
      }
      for (Index k = 0; k < r; ++k) grad_b.col(k) += e2[k] * w_;
    }
    grad_phi *= inv;
    return;
  }
  // Closed-form entropy: H = sum(omega) + log det C / 2 + const, with
  //   dH / d omega_i = (Sigma^-1)_ii d_i^2 = 1 - |L^-1 a_i|^2,   dH / dB = diag(d)^-1 A C^-1,
  // a_i being row i of A.
  for (Index s = 0; s < draws; ++s) {
    const auto e2 = eps.col(s).tail(r);
    for (Index i = 0; i < d; ++i) {
      grad_mu[i] += g(i, s);
      grad_omega[i] += g(i, s) * eps(i, s);
    }
    for (Index k = 0; k < r; ++k) grad_b.col(k) += e2[k] * g.col(s);
  }
  grad_phi *= inv;
  for (Index i = 0; i < d; ++i) {
    auto t = at_.col(i);
    t = a_.row(i).transpose();
    llt_.matrixL().solveInPlace(t);  // L^-1 a_i
    grad_omega[i] = grad_omega[i] * d_[i] + 1.0 - t.squaredNorm();
    llt_.matrixU().solveInPlace(t);  // C^-1 a_i
    for (Index k = 0; k < r; ++k) grad_b(i, k) += t[k] / d_[i];
  }
}

double LowRankGaussian::entropy(const Eigen::Ref<const Vector>& phi) const {
  const Index d = dim();
  Eigen::Map<const Matrix> b(phi.data() + 2 * d, d, rank_);
  const Vector inv_d = (-phi.segment(d, d).array()).exp();
  const Matrix a = inv_d.asDiagonal() * b;
  Matrix c = Matrix::Identity(rank_, rank_);
  c.selfadjointView<Eigen::Lower>().rankUpdate(a.transpose());
  const Eigen::LLT<Matrix> llt(c);
  return gaussian_entropy(phi.segment(d, d).sum()) + llt.matrixLLT().diagonal().array().log().sum();
}

// -log q(zeta_s) = H - D/2 + (zeta_s - mu)^T Sigma^-1 (zeta_s - mu) / 2, exactly, with the
// quadratic form |e1|^2 + |e2|^2 - |L^-1 v|^2 (see the top of the file); its mean over eps is
// H - D/2 + (D + r - r) / 2 = H. This is log q at the draw itself, so when q equals a Gaussian
// posterior log p(zeta_s) - log q(zeta_s) is the same constant for every draw, as for the other
// families.
double LowRankGaussian::entropy_estimate(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps) {
  const Index d = dim();
  const double half_log_det_c = llt_.matrixLLT().diagonal().array().log().sum();  // from draw()
  const double h = gaussian_entropy(phi.segment(d, d).sum()) + half_log_det_c;
  return h - 0.5 * double(d) + 0.5 * (eps.squaredNorm() - v_sq_) / double(eps.cols());
}

// log q(zeta_s) = -(H - D/2) - (zeta_s - mu)^T Sigma^-1 (zeta_s - mu) / 2 with the quadratic form
// |e1|^2 + |e2|^2 - |L^-1 v|^2, v = A^T e1 - e2 (the top of the file), and
// H - D/2 = D/2 log(2 pi) + sum(omega) + log det L (matrix determinant lemma: det Sigma =
// prod(d)^2 det C). Unlike entropy_estimate, this forms its own A and C = L L^T instead of using
// draw()'s scratch, so it is const: O(D r (r + S) + r^3), allocating, meant for diagnostics
// (PSIS), not for the optimisation loop. Every term stays O(D + r) however large B is relative to
// d: |L^-1 v|^2 = v^T C^-1 v is at most |e1|^2 + |e2|^2 (it is the squared norm of the projection
// of eps_s = [e1; e2] onto the column space of [A; -I], whose Gram matrix is C), so there is no catastrophic
// cancellation.
void LowRankGaussian::log_q(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                            Eigen::Ref<Vector> out) const {
  const Index d = dim(), r = rank_, n = eps.cols();
  Eigen::Map<const Matrix> b(phi.data() + 2 * d, d, r);
  const Vector inv_d = (-phi.segment(d, d).array()).exp();
  const Matrix a = inv_d.asDiagonal() * b;
  Matrix c = Matrix::Identity(r, r);
  c.selfadjointView<Eigen::Lower>().rankUpdate(a.transpose());
  const Eigen::LLT<Matrix> llt(c);
  const double constant =
      gaussian_entropy(phi.segment(d, d).sum()) + llt.matrixLLT().diagonal().array().log().sum() - 0.5 * double(d);
  Matrix v = a.transpose() * eps.topRows(d);
  v -= eps.bottomRows(r);
  llt.matrixL().solveInPlace(v);
  for (Index s = 0; s < n; ++s) out[s] = -constant - 0.5 * (eps.col(s).squaredNorm() - v.col(s).squaredNorm());
}

// min_Q |B Q - B_reference|_F over orthogonal Q (orthogonal Procrustes): Q = U V^T, the polar
// factor of M = B^T B_reference = U S V^T. U and V come from the eigendecomposition
// M^T M = V S^2 V^T (several times faster than an SVD of M for the r of interest, which matters
// as this runs every step): u_i = M v_i / s_i, orthonormalised by modified Gram-Schmidt in order
// of decreasing s_i, so Q is orthogonal to rounding even when M is (nearly) singular; directions
// with s_i ~ 0 carry no weight in tr(Q^T M) and get any orthonormal completion. O(D r^2 + r^3);
// no allocation up to r = kSmallRank (one r-vector inside Eigen's eigensolver above).
void LowRankGaussian::align(Eigen::Ref<Vector> phi, const Eigen::Ref<const Vector>& reference) {
  const Index d = dim(), r = rank_;
  Eigen::Map<Matrix> b(phi.data() + 2 * d, d, r);
  Eigen::Map<const Matrix> b_reference(reference.data() + 2 * d, d, r);
  for (Index k = 0; k < r; ++k)
    for (Index j = 0; j < r; ++j) m_(j, k) = b.col(j).dot(b_reference.col(k));
  for (Index k = 0; k < r; ++k)
    for (Index j = k; j < r; ++j) mtm_(j, k) = m_.col(j).dot(m_.col(k));
  if (r <= kSmallRank) {
    eig_small_.compute(mtm_);  // eigenvalues in increasing order
    align_with(phi, eig_small_);
  } else {
    eig_.compute(mtm_);
    align_with(phi, eig_);
  }
}

template <class Solver>
void LowRankGaussian::align_with(Eigen::Ref<Vector> phi, const Solver& eig) {
  const Index d = dim(), r = rank_;
  Eigen::Map<Matrix> b(phi.data() + 2 * d, d, r);
  const auto& v = eig.eigenvectors();
  const double s_max = std::sqrt(std::max(eig.eigenvalues()[r - 1], 0.0));
  for (Index c = 0; c < r; ++c) {  // column c of U pairs with column r - 1 - c of V
    auto u = u_.col(c);
    u.noalias() = m_ * v.col(r - 1 - c);
    for (int pass = 0; pass < 2; ++pass)  // "twice is enough"
      for (Index p = 0; p < c; ++p) u -= u_.col(p).dot(u) * u_.col(p);
    double norm = u.norm();
    // Below this, rounding dominates M v_i: complete with the unit vector least in span(u_0..).
    if (!(norm > 1e-10 * s_max)) {
      Index best = 0;
      double best_norm = -1.0;
      for (Index j = 0; j < r; ++j) {
        u.setZero();
        u[j] = 1.0;
        for (int pass = 0; pass < 2; ++pass)
          for (Index p = 0; p < c; ++p) u -= u_.col(p).dot(u) * u_.col(p);
        if (u.norm() > best_norm) {
          best_norm = u.norm();
          best = j;
        }
      }
      u.setZero();
      u[best] = 1.0;
      for (int pass = 0; pass < 2; ++pass)
        for (Index p = 0; p < c; ++p) u -= u_.col(p).dot(u) * u_.col(p);
      norm = u.norm();
    }
    u /= norm;
  }
  for (Index k = 0; k < r; ++k)
    for (Index j = 0; j < r; ++j) {
      double sum = 0.0;
      for (Index c = 0; c < r; ++c) sum += u_(j, c) * v(k, r - 1 - c);
      q_(j, k) = sum;
    }
  bq_.setZero();
  for (Index k = 0; k < r; ++k)
    for (Index j = 0; j < r; ++j) bq_.col(k) += q_(j, k) * b.col(j);
  b = bq_;
}

void LowRankGaussian::unwhiten(Eigen::Ref<Vector> phi, const Preconditioner& p) const {
  // A full C would make C diag(d)^2 C^T dense: not diagonal plus rank r any more.
  if (!p.is_diagonal()) throw std::invalid_argument("the low-rank family needs a diagonal preconditioner");
  const Index d = dim();
  phi.head(d) = p.shift + p.diagonal.cwiseProduct(phi.head(d));
  phi.segment(d, d) += p.diagonal.array().log().matrix();  // d scales by C_ii
  Eigen::Map<Matrix> b(phi.data() + 2 * d, d, rank_);
  b.array().colwise() *= p.diagonal.array();  // and so does each row of B
}

Matrix LowRankGaussian::covariance(const Eigen::Ref<const Vector>& phi) const {
  const Index d = dim();
  Eigen::Map<const Matrix> b(phi.data() + 2 * d, d, rank_);
  Matrix cov = b * b.transpose();
  cov.diagonal() += (2.0 * phi.segment(d, d).array()).exp().matrix();
  return cov;
}

void LowRankGaussian::log_marginal_sd(const Eigen::Ref<const Vector>& phi, Eigen::Ref<Vector> out) const {
  const Index d = dim();
  Eigen::Map<const Matrix> b(phi.data() + 2 * d, d, rank());  // phi = [mu, omega, B]
  for (Index i = 0; i < d; ++i) out(i) = log_sd_of(phi(d + i), b.row(i).squaredNorm());
}

}  // namespace fastvi
