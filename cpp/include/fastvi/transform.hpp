// Constraint transforms from the unconstrained space (zeta) to a parameter's support (theta).
//
//   identity            theta = zeta
//   lower a             theta = a + exp(zeta)
//   upper b             theta = b - exp(zeta)
//   interval (a, b)     theta = a + (b - a) * inv_logit(zeta)
//
// Each adds log|d theta / d zeta| to the log density so the fit targets the right distribution.
//
// Vector transforms (Stan's definitions) act on the trailing axis (simplex, ordered,
// positive_ordered: shape (..., K)) or the two trailing axes (cholesky_corr, cholesky_cov: shape
// (..., K, K), row-major) of a block, one vector or matrix at a time; a block holds `count` of
// them. Their free coordinates (zeta) are fewer than their values when there is a constraint:
//
//   simplex             K - 1 free: stick-breaking, x_k = stick_k * inv_logit(z_k - log(K - 1 - k)),
//                       stick_{k+1} = stick_k - x_k, x_{K-1} = stick_{K-1}; zeta = 0 is uniform
//   ordered             K free: x_0 = z_0, x_k = x_{k-1} + exp(z_k)
//   positive_ordered    K free: x_0 = exp(z_0), x_k = x_{k-1} + exp(z_k)
//   cholesky_corr       K(K-1)/2 free: canonical partial correlations tanh(z) (row-major below
//                       the diagonal), L(i, j) = cpc(i, j) * sqrt(1 - sum_{j' < j} L(i, j')^2),
//                       L(i, i) = sqrt(1 - sum_{j < i} L(i, j)^2): L L^T has a unit diagonal
//   cholesky_cov        K(K+1)/2 free: row-major lower triangle, exp on the diagonal
//
// log|J| is taken with respect to the free values: simplex x_0..x_{K-2}, the strictly lower
// triangle for cholesky_corr, the lower triangle for cholesky_cov.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "fastvi/math.hpp"
#include "fastvi/types.hpp"

namespace fastvi {

enum class TransformKind {
  Identity,
  Lower,
  Upper,
  Interval,
  // vector transforms
  Simplex,
  Ordered,
  PositiveOrdered,
  CholeskyCorr,
  CholeskyCov
};

struct Transform {
  TransformKind kind = TransformKind::Identity;
  double lower = -kInf;
  double upper = kInf;
  // Vector transforms: K (the trailing axis' length, or the matrix order), how many vectors or
  // matrices the block holds, and the free coordinates and values of each.
  Index k = 1;
  Index count = 0;
  Index free_each = 1;
  Index size_each = 1;
  // simplex: log(K - 1 - i), the stick-breaking offsets (computed once, not per step)
  std::vector<double> log_remaining;

  // Picks the transform for the bounds; throws std::invalid_argument if lower >= upper or a bound is NaN.
  static Transform from_bounds(double lower, double upper);
  // A vector transform by name ("simplex", "ordered", "positive_ordered", "cholesky_corr",
  // "cholesky_cov") for a block of shape `shape`; throws std::invalid_argument for an unknown name
  // or a shape it does not fit (the message does not name the parameter: the caller adds it).
  static Transform vector(const std::string& name, const std::vector<Index>& shape);

  bool elementwise() const { return kind <= TransformKind::Interval; }
  // Free coordinates of a block of `size` values (size itself for element-wise transforms).
  Index free_size(Index size) const { return elementwise() ? size : count * free_each; }
  // The name of a vector transform (empty for element-wise ones).
  std::string name() const;

  // Vector transforms, one vector or matrix: its values x (size_each) from its free coordinates z
  // (free_each); returns log|J|.
  double forward(const double* z, double* x) const;
  // gz = J^T gx + d log|J| / dz, at z whose values are x (as forward computed them). gz may be
  // used as scratch before it is written; no allocation.
  void backward(const double* z, const double* x, const double* gx, double* gz) const;
  // The free coordinates of values x (which the caller has checked satisfy the constraint).
  void inverse(const double* x, double* z) const;

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
      default:  // vector transforms: forward()
        break;
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
      default:  // vector transforms: forward() and backward()
        break;
    }
    return {z, 0.0, 1.0, 0.0};
  }
};

}  // namespace fastvi
