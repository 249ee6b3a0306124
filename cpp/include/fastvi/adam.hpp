// Adam (Kingma & Ba 2015) with bias correction, as gradient *ascent* on the ELBO, plus a cap on
// the second moment so that one burst of huge gradients cannot stall the fit.
//
// Why the cap: v forgets with time constant 1 / (1 - beta2) = 1000 steps, so after a transient
// where gradients were 1e100 (a scale parameter near zero, say) every later step is ~1e-100 of lr
// and the fit freezes wherever it is, for hundreds of thousands of steps. At the end of every
// window we therefore cap v at kVCap times the mean square gradient seen in that window. With
// stationary gradient noise v is about that mean square, so the cap does not bind.
#pragma once

#include <algorithm>
#include <cmath>

#include "fastvi/types.hpp"

namespace fastvi {

class Adam {
 public:
  Adam(Index size, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8)
      : m_(Vector::Zero(size)),
        v_(Vector::Zero(size)),
        window_sq_(Vector::Zero(size)),
        beta1_(beta1),
        beta2_(beta2),
        eps_(epsilon) {}

  // Moves x along the ascent direction `grad` (which the caller has checked is finite). Each
  // coordinate moves by at most about lr / sqrt(1 - beta2), so a finite x stays finite.
  //
  // One pass over the five arrays, in SIMD packets (Eigen's packet math: the compiler does not
  // vectorise std::sqrt by itself, as it may set errno); the full-rank family at D = 1,000 has
  // a million parameters, and a scalar loop here cost more than the ELBO gradient itself. Which
  // coordinates fall in the scalar tail depends on the size alone, so results stay deterministic.
  void step(Eigen::Ref<Vector> x, const Eigen::Ref<const Vector>& grad, double lr) {
    using namespace Eigen::internal;
    using simd::kWidth;
    using simd::Packet;
    ++t_;
    ++window_steps_;
    const double c1 = 1.0 - std::pow(beta1_, double(t_)), c2 = 1.0 - std::pow(beta2_, double(t_));
    const double step_size = lr * std::sqrt(c2) / c1;
    const double eps_hat = eps_ * std::sqrt(c2);  // the usual eps, moved inside the bias correction
    const Index n = x.size();
    double *xp = x.data(), *mp = m_.data(), *vp = v_.data(), *wp = window_sq_.data();
    const double* gp = grad.data();
    const Packet b1 = pset1<Packet>(beta1_), b1c = pset1<Packet>(1.0 - beta1_);
    const Packet b2 = pset1<Packet>(beta2_), b2c = pset1<Packet>(1.0 - beta2_);
    const Packet lo = pset1<Packet>(-kMaxGradient), hi = pset1<Packet>(kMaxGradient);
    const Packet ss = pset1<Packet>(step_size), eh = pset1<Packet>(eps_hat);
    Index i = 0;
    for (; i + kWidth <= n; i += kWidth) {
      // A finite gradient above ~1e154 would square to inf and freeze v for good.
      const Packet g = pmin(pmax(ploadu<Packet>(gp + i), lo), hi);
      const Packet gg = pmul(g, g);
      const Packet m = padd(pmul(b1, ploadu<Packet>(mp + i)), pmul(b1c, g));
      const Packet v = padd(pmul(b2, ploadu<Packet>(vp + i)), pmul(b2c, gg));
      pstoreu(mp + i, m);
      pstoreu(vp + i, v);
      pstoreu(wp + i, padd(ploadu<Packet>(wp + i), gg));
      pstoreu(xp + i, padd(ploadu<Packet>(xp + i), pdiv(pmul(ss, m), padd(psqrt(v), eh))));
    }
    for (; i < n; ++i) {
      const double g = std::min(std::max(gp[i], -kMaxGradient), kMaxGradient), gg = g * g;
      mp[i] = beta1_ * mp[i] + (1.0 - beta1_) * g;
      vp[i] = beta2_ * vp[i] + (1.0 - beta2_) * gg;
      wp[i] += gg;
      xp[i] += step_size * mp[i] / (std::sqrt(vp[i]) + eps_hat);
    }
  }

  // Caps v (bias-corrected) at kVCap times this window's mean square gradient; starts a new window.
  void end_window() {
    if (window_steps_ == 0) return;
    const double c2 = 1.0 - std::pow(beta2_, double(t_));
    const double scale = kVCap * c2 / double(window_steps_);
    for (Index i = 0; i < v_.size(); ++i) v_[i] = std::min(v_[i], scale * window_sq_[i]);
    window_sq_.setZero();
    window_steps_ = 0;
  }

  Index steps() const { return t_; }

  // Forgets the momentum (not v, the gradient's scale, which stays valid): for a restart from a
  // new point, where the old direction of travel means nothing.
  void reset_momentum() { m_.setZero(); }

 private:
  static constexpr double kMaxGradient = 1e150;
  static constexpr double kVCap = 100.0;  // steps shrink at most 10x below their normal size
  Vector m_, v_, window_sq_;
  double beta1_, beta2_, eps_;
  Index t_ = 0, window_steps_ = 0;
};

}  // namespace fastvi
