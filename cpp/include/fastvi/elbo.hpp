// The batched reparameterised ELBO gradient estimator: one step's draws, log density, gradient.
#pragma once

#include <cstdint>
#include <optional>

#include "fastvi/family.hpp"
#include "fastvi/minibatch.hpp"
#include "fastvi/model.hpp"
#include "fastvi/precondition.hpp"
#include "fastvi/rng.hpp"

namespace fastvi {

class ElboEstimator {
 public:
  // Sizes every buffer once for `draws` draws per step on up to `threads` threads.
  // With an active preconditioner the family's draws are u and the model is evaluated at
  // zeta = shift + C u (see precondition.hpp); phi then parameterises q(u).
  // Holds the model's evaluation lock for its lifetime (see Model::evaluation_lock): the model
  // cannot change under a running estimator, and other estimators may share it.
  // batch_rows > 0 (and below Model::data_rows()): each estimate evaluates the model's row-wise
  // factors on a minibatch of that many rows, a uniformly random subset drawn from (seed, step)
  // alone (so the same for any thread count), weighted by N / batch_rows.
  // control_variate (with a minibatch): each estimate also evaluates the minibatch at a reference
  // point z~ (set_reference) and uses
  //   f(z_s) ~= f_batch(z_s) - f_batch(z~) + f_full(z~)
  // for the log density and its gradient, f_full(z~) being one evaluation on every row. This is
  // unbiased for any z~ (the batch's expected difference is the full difference), and the
  // subsampling noise becomes that of the difference: it shrinks as the draws near z~ (SVRG's
  // control variate, in the draws' coordinates; see fit.cpp's subsampling_weight). The factors
  // that are evaluated whole cancel exactly. Until a reference is set, estimates are plain.
  ElboEstimator(const Model& model, GaussianFamily& family, Index draws,
                GradientEstimator gradient = GradientEstimator::StickingTheLanding,
                const Preconditioner* preconditioner = nullptr, int threads = 1, Index batch_rows = 0,
                bool control_variate = false);

  // Estimates the ELBO and its gradient (ascent direction) with respect to phi from the draws of
  // (seed, stream, step), using at most `threads` threads (more than the constructor's allocates
  // larger scratch once). Returns false, leaving grad_phi unspecified, if any draw's log density or
  // gradient is not finite.
  bool estimate(const Eigen::Ref<const Vector>& phi, std::uint64_t seed, Stream stream, std::uint64_t step,
                Eigen::Ref<Vector> grad_phi, double& elbo, int threads);

  // Evaluates the model on every row at the reference point whose coordinates (those of the
  // family's draws: whitened ones when preconditioned) are `mean`, and uses it from the next
  // estimate on. Returns false, keeping the previous reference, if that log density or its
  // gradient is not finite. Allocates nothing; costs one full-batch evaluation.
  bool set_reference(const Eigen::Ref<const Vector>& mean, int threads);
  bool uses_control_variate() const { return cv_; }
  bool has_reference() const { return have_reference_; }

  Index draws() const { return eps_.cols(); }
  const Vector& log_density() const { return lp_; }  // of the last estimate, per draw

 private:
  const Model& model_;
  std::shared_lock<std::shared_mutex> model_lock_;
  GaussianFamily& family_;
  GradientEstimator gradient_;
  const Preconditioner* precond_;
  Matrix eps_, zeta_, grad_zeta_;
  Matrix u_, grad_u_;
  double log_det_ = 0.0;  // log |det C|, so that the ELBO is that of q(zeta)
  Vector lp_;
  ModelWorkspace ws_;
  std::optional<MinibatchSampler> minibatch_;  // with batch_rows < N
  // The control variate (with a minibatch only): the draws and the reference as one batch of
  // draws + 1 columns (the reference last), and the reference's full-batch log density and
  // gradient, on its own workspace.
  bool cv_ = false, have_reference_ = false;
  Matrix zeta_cv_, grad_cv_, ref_u_, ref_zeta_, ref_grad_;
  Vector lp_cv_, ref_lp_;
  ModelWorkspace ws_full_;
};

}  // namespace fastvi
