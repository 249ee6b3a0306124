// Small dense Cholesky routines on one draw's row-major n x n block, in place: the factorisation
// and its reverse pass, shared by the cholesky node (linalg_nodes.cpp) and the multi_normal kernel.
//
// Why hand-written and not Eigen's LLT: LLT owns (or references) a matrix and sizes its blocking
// buffers from the problem, on the heap above EIGEN_STACK_ALLOCATION_LIMIT; these loops work where
// the data already is (a node's rows, a kernel's scratch) and allocate nothing at any n. Their
// inner work is Eigen matrix-vector products on blocks of the row-major storage (GEMV kernels,
// several rows or columns per pass, no dependency chain between rows), which ran 2.5x faster at
// n = 50 than the row-by-row dot products and axpys they replace. They are level-2 code, O(n^3)
// per draw, meant for the n of a covariance matrix (tens to a few hundred).
#pragma once

#include <cmath>

#include "fastvi/types.hpp"

namespace fastvi::dense {

using ConstRow = Eigen::Map<const Eigen::VectorXd>;
using Row = Eigen::Map<Eigen::VectorXd>;
using Column = Eigen::Map<Eigen::VectorXd, 0, Eigen::InnerStride<>>;
using ConstColumn = Eigen::Map<const Eigen::VectorXd, 0, Eigen::InnerStride<>>;
using ConstBlock = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

// a (row-major n x n) holds a symmetric matrix in its lower triangle (the upper triangle is not
// read). Overwrites the lower triangle with the Cholesky factor L (a = L L^T, L_ii > 0) and zeroes
// the strict upper triangle. Returns false, leaving `a` partly overwritten, when the matrix is not
// positive-definite or not finite (a pivot that is <= 0, inf or NaN: a NaN or inf anywhere in
// row i reaches pivot i): the caller marks the draw invalid.
//
// Left-looking, a column at a time: L_jj from row j's prefix, then the whole column below it,
// L[j+1:, j] = (a[j+1:, j] - L[j+1:, :j] L[j, :j]^T) / L_jj, one row-major matrix-vector product.
inline bool cholesky_in_place(double* a, Index n) {
  for (Index j = 0; j < n; ++j) {
    double* rj = a + j * n;
    const double d = rj[j] - ConstRow(rj, j).squaredNorm();
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    const double ljj = std::sqrt(d);
    rj[j] = ljj;
    const Index below = n - j - 1;
    if (below == 0) continue;
    Column col(a + (j + 1) * n + j, below, Eigen::InnerStride<>(n));
    if (j > 0) col.noalias() -= ConstBlock(a + (j + 1) * n, below, j, Eigen::OuterStride<>(n)) * ConstRow(rj, j);
    col /= ljj;
  }
  for (Index i = 0; i + 1 < n; ++i) Row(a + i * n + i + 1, n - i - 1).setZero();
  return true;
}

// The reverse pass of cholesky_in_place (Murray 2016, "Differentiation of the Cholesky
// decomposition", the unblocked algorithm: the factorisation's loop run backwards). On entry b
// (row-major n x n) holds Lbar = d f / d L in its lower triangle (the upper triangle is not read);
// on exit it holds d f / d a for the entries of a's lower triangle, each off-diagonal entry
// counted once (a's upper triangle is not an input), and zeros above the diagonal. A caller whose
// input is the symmetric matrix gives half of each off-diagonal entry to (i, j) and half to (j, i).
//
// O(n^3 / 3) multiply-adds, against n^3 for the closed form L^-T Phi(L^T Lbar) L^-1 this
// replaced: for each column j from the last, its own entries, then row j's prefix (a column-major
// matrix-vector product) and the block below it (a rank-1 update, row by row).
inline void cholesky_adjoint_in_place(const double* l, double* b, Index n) {
  for (Index i = 0; i + 1 < n; ++i) Row(b + i * n + i + 1, n - i - 1).setZero();
  for (Index j = n - 1; j >= 0; --j) {
    const double ljj = l[j * n + j];
    const Index below = n - j - 1;
    Column bcol(b + (j + 1) * n + j, below, Eigen::InnerStride<>(n));
    double& bjj = b[j * n + j];
    if (below > 0) {
      bjj -= ConstColumn(l + (j + 1) * n + j, below, Eigen::InnerStride<>(n)).dot(bcol) / ljj;
      bcol /= ljj;
    }
    bjj /= ljj;
    if (j > 0) {
      Row bj(b + j * n, j);
      const ConstRow lj(l + j * n, j);
      bj -= bjj * lj;
      if (below > 0) {
        bj.noalias() -= ConstBlock(l + (j + 1) * n, below, j, Eigen::OuterStride<>(n)).transpose() * bcol;
        for (Index r = j + 1; r < n; ++r) Row(b + r * n, j) -= b[r * n + j] * lj;
      }
    }
    bjj *= 0.5;
  }
}

// g (row-major n x n) += the gradient with respect to a symmetric matrix's every element, from
// b = cholesky_adjoint_in_place's output (its lower triangle): half of each off-diagonal entry to
// (i, j) and half to (j, i), so that f is differentiated as a function of (A + A^T) / 2.
inline void add_symmetric_gradient(const double* b, double* g, Index n) {
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < i; ++j) {
      const double h = 0.5 * b[i * n + j];
      g[i * n + j] += h;
      g[j * n + i] += h;
    }
    g[i * n + i] += b[i * n + i];
  }
}

}  // namespace fastvi::dense
