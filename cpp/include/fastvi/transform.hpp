// Constraint transforms from the unconstrained space (zeta) to a parameter's support (theta).
//
//   identity            theta = zeta
//   lower a             theta = a + exp(zeta)
//   upper b             theta = b - exp(zeta)
//   interval (a, b)     theta = a + (b - a) * inv_logit(zeta)
//
// Each adds log|d theta / d zeta| to the log density so the fit targets the right distribution.
#pragma once

#include <cmath>

#include "fastvi/math.hpp"
#include "fastvi/types.hpp"

namespace fastvi {

enum class TransformKind { Identity, Lower, Upper, Interval };

struct Transform {
  TransformKind kind = TransformKind::Identity;
  double lower = -kInf;
  double upper = kInf;

  // Picks the transform for the bounds; throws std::invalid_argument if lower >= upper or a bound is NaN.
  static Transform from_bounds(double lower, double upper);

  double constrain(double z) const {
    switch (kind) {
      case TransformKind::Identity:
        return z;
      case TransformKind::Lower:
        return lower + std::exp(z);
      case TransformKind::Upper:
        return upper - std::exp(z);
      case TransformKind::Interval:
        return lower + (upper - lower) * math::inv_logit(z);
    }
    return z;
  }
  double unconstrain(double x) const;

  // theta, log|J| and the two derivatives the backward pass needs, for one element.
  struct Jet {
    double value, log_jacobian, dvalue, dlog_jacobian;
  };
  Jet jet(double z) const {
    switch (kind) {
      case TransformKind::Identity:
        return {z, 0.0, 1.0, 0.0};
      case TransformKind::Lower: {
        const double e = std::exp(z);
        return {lower + e, z, e, 1.0};
      }
      case TransformKind::Upper: {
        const double e = std::exp(z);
        return {upper - e, z, -e, 1.0};
      }
      case TransformKind::Interval: {
        const double p = math::inv_logit(z), width = upper - lower;
        // log p + log(1 - p) = -|z| - 2 log1p(exp(-|z|)), stable for large |z|.
        const double log_pq = -std::abs(z) - 2.0 * std::log1p(std::exp(-std::abs(z)));
        return {lower + width * p, std::log(width) + log_pq, width * p * (1.0 - p), 1.0 - 2.0 * p};
      }
    }
    return {z, 0.0, 1.0, 0.0};
  }
};

}  // namespace fastvi
