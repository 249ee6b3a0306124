// Small dense Cholesky routines on one draw's row-major n x n block, in place: the factorisation
// and the solves of its reverse pass, shared by the cholesky node (linalg_nodes.cpp) and the
// multi_normal kernel.
//
// Why hand-written and not Eigen's LLT / triangularView solves: those size their blocking buffers
// from the problem and put them on the heap above EIGEN_STACK_ALLOCATION_LIMIT, and an LLT object
// owns its matrix; these loops work where the data already is (a node's rows, a kernel's scratch),
// allocate nothing at any n, and keep their inner loops on contiguous rows (Eigen maps of a row
// segment: dot products and axpys that vectorise). They are level-2 code, O(n^3) per draw, meant
// for the n of a covariance matrix (tens to a few hundred), not for n in the thousands.
#pragma once

#include <cmath>

#include "fastvi/types.hpp"

namespace fastvi::dense {

using ConstRow = Eigen::Map<const Eigen::VectorXd>;
using Row = Eigen::Map<Eigen::VectorXd>;

// a (row-major n x n) holds a symmetric matrix in its lower triangle (the upper triangle is not
// read). Overwrites the lower triangle with the Cholesky factor L (a = L L^T, L_ii > 0) and zeroes
// the strict upper triangle. Returns false, leaving `a` partly overwritten, when the matrix is not
// positive-definite or not finite (a pivot that is <= 0, inf or NaN): the caller marks the draw
// invalid. Cholesky-Banachiewicz order: row i needs rows < i, and every sum is over a row prefix.
inline bool cholesky_in_place(double* a, Index n) {
  for (Index i = 0; i < n; ++i) {
    double* ri = a + i * n;
    for (Index j = 0; j < i; ++j) {
      const double* rj = a + j * n;
      ri[j] = (ri[j] - ConstRow(ri, j).dot(ConstRow(rj, j))) / rj[j];
    }
    const double d = ri[i] - ConstRow(ri, i).squaredNorm();
    if (!(d > 0.0) || !std::isfinite(d)) return false;  // not PD, or NaN / inf somewhere in row i
    ri[i] = std::sqrt(d);
    for (Index j = i + 1; j < n; ++j) ri[j] = 0.0;
  }
  return true;
}

// b <- L^-T b L^-1 for the lower-triangular factor l (row-major, upper triangle zero) and a
// row-major n x n b. With `b_lower` the caller promises b is lower triangular (its upper triangle
// is not read and may hold anything), which saves the work on its zeros (b L^-1 is then lower
// triangular too).
inline void lower_sandwich_solve(const double* l, double* b, Index n, bool b_lower) {
  // Rows of z = b L^-1: z L = b_r, solved from the last column down; each z_k removes its
  // contribution z_k L[k, 0..k) from the entries left of it (an axpy with row k of L).
  for (Index r = 0; r < n; ++r) {
    double* br = b + r * n;
    const Index last = b_lower ? r : n - 1;
    if (b_lower)
      for (Index k = r + 1; k < n; ++k) br[k] = 0.0;
    for (Index k = last; k >= 0; --k) {
      br[k] /= l[k * n + k];
      Row(br, k) -= br[k] * ConstRow(l + k * n, k);
    }
  }
  // x = L^-T z: L^T x = z is upper triangular, so rows of x come from the bottom up:
  // x_i = (z_i - sum_{k > i} L_ki x_k) / L_ii, each term an axpy of a whole row.
  for (Index i = n - 1; i >= 0; --i) {
    Row xi(b + i * n, n);
    for (Index k = i + 1; k < n; ++k) xi -= l[k * n + i] * ConstRow(b + k * n, n);
    xi /= l[i * n + i];
  }
}

}  // namespace fastvi::dense
