// Adam (Kingma & Ba 2015) with bias correction, as gradient *ascent* on the ELBO.
#pragma once

#include <cmath>

#include "fastvi/types.hpp"

namespace fastvi {

class Adam {
 public:
  Adam(Index size, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8)
      : m_(Vector::Zero(size)), v_(Vector::Zero(size)), beta1_(beta1), beta2_(beta2), eps_(epsilon) {}

  // Moves x along the ascent direction `grad` (which the caller has checked is finite). Each
  // coordinate moves by at most about lr / sqrt(1 - beta2), so a finite x stays finite.
  void step(Eigen::Ref<Vector> x, const Eigen::Ref<const Vector>& grad, double lr) {
    ++t_;
    const double c1 = 1.0 - std::pow(beta1_, double(t_)), c2 = 1.0 - std::pow(beta2_, double(t_));
    const double step_size = lr * std::sqrt(c2) / c1;
    const double eps_hat = eps_ * std::sqrt(c2);  // the usual eps, moved inside the bias correction
    for (Index i = 0; i < x.size(); ++i) {
      m_[i] = beta1_ * m_[i] + (1.0 - beta1_) * grad[i];
      v_[i] = beta2_ * v_[i] + (1.0 - beta2_) * grad[i] * grad[i];
      x[i] += step_size * m_[i] / (std::sqrt(v_[i]) + eps_hat);
    }
  }

  Index steps() const { return t_; }

 private:
  Vector m_, v_;
  double beta1_, beta2_, eps_;
  Index t_ = 0;
};

}  // namespace fastvi
