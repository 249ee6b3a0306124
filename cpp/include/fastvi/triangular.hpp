// Level-3 products and solves with a lower-triangular D x D factor L (only its lower triangle is
// read), for the full-rank family and the dense preconditioner.
//
// Why not Eigen's triangularView products: Eigen's triangular matrix-matrix products and solves
// size their packing buffers from the whole problem and put them on the heap once they exceed
// EIGEN_STACK_ALLOCATION_LIMIT (128 KB), which happens from D ~ 300 on: an allocation every
// step. These helpers cut the work into row blocks of at most kTriBlock rows, depth tiles of at
// most kTriDepth and panels of at most kTriPanel right-hand columns, so that every product Eigen
// sees is small enough for its buffers to live on the stack: they never allocate, at any D.
// Results are the same at every D up to rounding (the order of the sums differs from Eigen's).
#pragma once

#include "fastvi/types.hpp"

namespace fastvi {

inline constexpr Index kTriBlock = 64;   // rows (and columns) of L per block
inline constexpr Index kTriDepth = 128;  // inner dimension of a block product
inline constexpr Index kTriPanel = 32;   // right-hand-side columns per block product

// y = tril(l) x. y must not alias x.
void lower_times(const Eigen::Ref<const Matrix>& l, const Eigen::Ref<const Matrix>& x, Eigen::Ref<Matrix> y);
// y = tril(l)^T x. y must not alias x.
void lower_transpose_times(const Eigen::Ref<const Matrix>& l, const Eigen::Ref<const Matrix>& x, Eigen::Ref<Matrix> y);
// x <- tril(l)^-T x.
void lower_transpose_solve_in_place(const Eigen::Ref<const Matrix>& l, Eigen::Ref<Matrix> x);
// g = tril(alpha a b^T) (D x D, zero above the diagonal), for a and b D x S.
void lower_outer(double alpha, const Eigen::Ref<const Matrix>& a, const Eigen::Ref<const Matrix>& b,
                 Eigen::Ref<Matrix> g);

}  // namespace fastvi
