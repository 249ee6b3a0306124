#include "fastvi/elbo.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace fastvi {

ElboEstimator::ElboEstimator(const Model& model, GaussianFamily& family, Index draws, GradientEstimator gradient,
                             const Preconditioner* preconditioner, int threads, Index batch_rows, bool control_variate)
    : model_(model),
      model_lock_(model.evaluation_lock()),
      family_(family),
      gradient_(gradient),
      precond_(preconditioner && preconditioner->active() ? preconditioner : nullptr) {
  if (draws < 1) throw std::invalid_argument("draws must be >= 1");
  if (family.dim() != model.dim()) throw std::invalid_argument("family and model dimensions differ");
  const Index d = model.dim();
  eps_.resize(family.noise_dim(), draws);
  zeta_.resize(d, draws);
  grad_zeta_.resize(d, draws);
  lp_.resize(draws);
  if (precond_) {
    precond_->validate(d);
    log_det_ = precond_->log_det();
    u_.resize(d, draws);
    grad_u_.resize(d, draws);
  }
  if (batch_rows < 0) throw std::invalid_argument("batch_size must be >= 1");
  if (batch_rows > 0) {
    const Index n = model.data_rows();
    if (n == 0)
      throw std::invalid_argument(
          "batch_size: the model has no row-wise factors to subsample (the GLM kernels are; other factors are "
          "always evaluated whole)");
    if (batch_rows > n)
      throw std::invalid_argument("batch_size is " + std::to_string(batch_rows) + " but the data have only " +
                                  std::to_string(n) + " rows");
    if (batch_rows < n) minibatch_.emplace(n, batch_rows);
  }
  cv_ = control_variate && minibatch_.has_value();
  if (cv_) {
    zeta_cv_.resize(d, draws + 1);
    grad_cv_.resize(d, draws + 1);
    lp_cv_.resize(draws + 1);
    ref_u_.resize(d, 1);
    ref_zeta_.resize(d, 1);
    ref_grad_.resize(d, 1);
    ref_lp_.resize(1);
    model_.prepare(ws_full_, 1, threads, 0);
  }
  model_.prepare(ws_, cv_ ? draws + 1 : draws, threads, minibatch_ ? minibatch_->batch() : 0);
  family_.reserve(draws);
}

bool ElboEstimator::set_reference(const Eigen::Ref<const Vector>& mean, int threads) {
  if (!cv_) throw std::logic_error("set_reference: this estimator has no control variate");
  if (mean.size() != zeta_.rows()) throw std::invalid_argument("set_reference: the point has the wrong length");
  // Into the scratch columns first: a failed evaluation keeps the previous reference.
  ref_u_.col(0) = mean;
  if (precond_) {
    precond_->apply(ref_u_, zeta_cv_.rightCols(1));
  } else {
    zeta_cv_.rightCols(1) = ref_u_;
  }
  model_.prepare(ws_full_, 1, threads, 0);  // nothing to do unless threads grew
  ws_full_.rows = nullptr;
  model_.log_density(zeta_cv_.rightCols(1), ws_full_, lp_cv_.tail(1), grad_cv_.rightCols(1), threads);
  if (!std::isfinite(lp_cv_(draws())) || !grad_cv_.rightCols(1).allFinite()) return false;
  ref_zeta_ = zeta_cv_.rightCols(1);
  ref_lp_ = lp_cv_.tail(1);
  ref_grad_ = grad_cv_.rightCols(1);
  have_reference_ = true;
  return true;
}

bool ElboEstimator::estimate(const Eigen::Ref<const Vector>& phi, std::uint64_t seed, Stream stream, std::uint64_t step,
                             Eigen::Ref<Vector> grad_phi, double& elbo, int threads) {
  fill_standard_normal(eps_, seed, stream, step);
  if (precond_) {
    family_.draw(phi, eps_, u_);
    precond_->apply(u_, zeta_);
  } else {
    family_.draw(phi, eps_, zeta_);
  }
  const Index s = draws();
  model_.prepare(ws_, cv_ ? s + 1 : s, threads,
                 minibatch_ ? minibatch_->batch() : 0);  // nothing to do unless threads grew
  if (minibatch_) {
    ws_.rows = minibatch_->draw(seed, stream, step);
    ws_.row_weight = double(minibatch_->rows()) / double(minibatch_->batch());
  }
  if (!cv_) {
    model_.log_density(zeta_, ws_, lp_, grad_zeta_, threads);
  } else {
    // The draws and the reference on the same rows (without a reference yet, the last column
    // repeats the first and is ignored: the workspace stays sized for draws + 1).
    zeta_cv_.leftCols(s) = zeta_;
    zeta_cv_.col(s) = have_reference_ ? ref_zeta_.col(0) : zeta_.col(0);
    model_.log_density(zeta_cv_, ws_, lp_cv_, grad_cv_, threads);
    if (have_reference_) {
      lp_ = (lp_cv_.head(s).array() - lp_cv_(s)) + ref_lp_(0);
      grad_zeta_ = (grad_cv_.leftCols(s).colwise() - grad_cv_.col(s)).colwise() + ref_grad_.col(0);
    } else {
      lp_ = lp_cv_.head(s);
      grad_zeta_ = grad_cv_.leftCols(s);
    }
  }
  const double mean_lp = lp_.mean();
  // One NaN or inf anywhere poisons the sum, so one check covers every draw and coordinate.
  if (!std::isfinite(mean_lp) || !std::isfinite(grad_zeta_.sum())) return false;
  if (precond_) {
    precond_->pull_back(grad_zeta_, grad_u_);
    family_.elbo_gradient(phi, eps_, grad_u_, gradient_, grad_phi);
  } else {
    family_.elbo_gradient(phi, eps_, grad_zeta_, gradient_, grad_phi);
  }
  // ELBO = E[log p(zeta) - log q(zeta)], with -log q evaluated exactly at each draw (q(zeta)'s
  // density is q(u)'s divided by |det C| when preconditioned). This has the same mean as
  // mean_lp + entropy but far less variance once q is close to p (none at all when p is Gaussian
  // and q exact), which keeps the windowed ELBO and the stopping rule calm.
  elbo = mean_lp + family_.entropy_estimate(phi, eps_) + log_det_;
  // A huge scale (exp(omega) = inf) can still turn finite inputs into NaN here.
  return std::isfinite(elbo) && std::isfinite(grad_phi.sum());
}

}  // namespace fastvi
