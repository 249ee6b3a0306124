// The batched reparameterised ELBO gradient estimator: one step's draws, log density, gradient.
#pragma once

#include <cstdint>

#include "fastvi/family.hpp"
#include "fastvi/model.hpp"
#include "fastvi/precondition.hpp"
#include "fastvi/rng.hpp"

namespace fastvi {

class ElboEstimator {
 public:
  // Sizes every buffer once for `draws` draws per step.
  // With an active preconditioner the family's draws are u and the model is evaluated at
  // zeta = shift + C u (see precondition.hpp); phi then parameterises q(u).
  ElboEstimator(Model& model, GaussianFamily& family, Index draws,
                GradientEstimator gradient = GradientEstimator::StickingTheLanding,
                const Preconditioner* preconditioner = nullptr);

  // Estimates the ELBO and its gradient (ascent direction) with respect to phi from the draws of
  // (seed, stream, step). Returns false, leaving grad_phi unspecified, if any draw's log density or
  // gradient is not finite.
  bool estimate(const Eigen::Ref<const Vector>& phi, std::uint64_t seed, Stream stream, std::uint64_t step,
                Eigen::Ref<Vector> grad_phi, double& elbo, int threads);

  Index draws() const { return eps_.cols(); }
  const Vector& log_density() const { return lp_; }  // of the last estimate, per draw

 private:
  Model& model_;
  GaussianFamily& family_;
  GradientEstimator gradient_;
  const Preconditioner* precond_;
  Matrix eps_, zeta_, grad_zeta_;
  Matrix u_, grad_u_;
  double log_det_ = 0.0;  // log |det C|, so that the ELBO is that of q(zeta)  // the family's draws and gradient in whitened coordinates (if preconditioned)
  Vector lp_;
  ModelWorkspace ws_;
};

}  // namespace fastvi
