// An affine change of the coordinates the optimiser works in: zeta = shift + C u.
//
// Fitting a Gaussian q(u) and mapping it through zeta = shift + C u gives a Gaussian q(zeta) of
// the same family when C is diagonal (any family) or lower-triangular (full rank), so the change
// of coordinates alters only how well-conditioned the optimisation is. fastvi takes shift and C
// from the Laplace approximation (python/fastvi/laplace.py), so that in u the posterior has
// roughly unit scale and no correlation, which is where Adam's fixed step size works well.
#pragma once

#include "fastvi/types.hpp"

namespace fastvi {

struct Preconditioner {
  Vector shift;     // D; empty: no preconditioning
  Vector diagonal;  // C = diag(diagonal), or
  Matrix lower;     // C lower-triangular (D x D); exactly one of diagonal and lower is set

  bool active() const { return shift.size() > 0; }
  bool is_diagonal() const { return diagonal.size() > 0; }
  // Throws std::invalid_argument unless the sizes fit dimension `dim` and C has a positive diagonal.
  void validate(Index dim) const;

  // log |det C|: q(zeta)'s entropy exceeds q(u)'s by this much.
  double log_det() const { return is_diagonal() ? diagonal.array().log().sum() : lower.diagonal().array().log().sum(); }

  // zeta = shift + C u for every column.
  void apply(const Eigen::Ref<const Matrix>& u, Eigen::Ref<Matrix> zeta) const;
  // g_u = C^T g_zeta for every column (the chain rule back to u).
  void pull_back(const Eigen::Ref<const Matrix>& g_zeta, Eigen::Ref<Matrix> g_u) const;
};

}  // namespace fastvi
