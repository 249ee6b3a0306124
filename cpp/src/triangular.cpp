// Blocked lower-triangular products and solves; see triangular.hpp for why they are blocked.
//
// Every Eigen product below is at most kTriBlock x kTriDepth times kTriDepth x kTriPanel (or a
// kTriBlock x kTriBlock triangle times kTriBlock x kTriPanel), so Eigen's packed blocks stay well
// below its 128 KB stack limit.
#include "fastvi/triangular.hpp"

#include <algorithm>

namespace fastvi {

void lower_times(const Eigen::Ref<const Matrix>& l, const Eigen::Ref<const Matrix>& x, Eigen::Ref<Matrix> y) {
  const Index d = l.rows(), s = x.cols();
  for (Index c0 = 0; c0 < s; c0 += kTriPanel) {
    const Index p = std::min(kTriPanel, s - c0);
    for (Index i0 = 0; i0 < d; i0 += kTriBlock) {
      const Index mb = std::min(kTriBlock, d - i0);
      auto yb = y.block(i0, c0, mb, p);
      // The diagonal block's triangle, then the full blocks to its left.
      yb.noalias() = l.block(i0, i0, mb, mb).triangularView<Eigen::Lower>() * x.block(i0, c0, mb, p);
      for (Index k0 = 0; k0 < i0; k0 += kTriDepth) {
        const Index kt = std::min(kTriDepth, i0 - k0);
        yb.noalias() += l.block(i0, k0, mb, kt) * x.block(k0, c0, kt, p);
      }
    }
  }
}

void lower_transpose_times(const Eigen::Ref<const Matrix>& l, const Eigen::Ref<const Matrix>& x, Eigen::Ref<Matrix> y) {
  const Index d = l.rows(), s = x.cols();
  for (Index c0 = 0; c0 < s; c0 += kTriPanel) {
    const Index p = std::min(kTriPanel, s - c0);
    for (Index j0 = 0; j0 < d; j0 += kTriBlock) {
      const Index mb = std::min(kTriBlock, d - j0), j1 = j0 + mb;
      auto yb = y.block(j0, c0, mb, p);
      // Row block J of L^T x: tril(L_JJ)^T x_J + sum over the blocks below, L_IJ^T x_I.
      yb.noalias() = l.block(j0, j0, mb, mb).triangularView<Eigen::Lower>().transpose() * x.block(j0, c0, mb, p);
      for (Index k0 = j1; k0 < d; k0 += kTriDepth) {
        const Index kt = std::min(kTriDepth, d - k0);
        yb.noalias() += l.block(k0, j0, kt, mb).transpose() * x.block(k0, c0, kt, p);
      }
    }
  }
}

void lower_transpose_solve_in_place(const Eigen::Ref<const Matrix>& l, Eigen::Ref<Matrix> x) {
  const Index d = l.rows(), s = x.cols();
  const Index last = (d - 1) / kTriBlock * kTriBlock;  // first row of the last block
  for (Index c0 = 0; c0 < s; c0 += kTriPanel) {
    const Index p = std::min(kTriPanel, s - c0);
    // Back substitution with U = L^T, one block of rows at a time from the bottom.
    for (Index j0 = last; j0 >= 0; j0 -= kTriBlock) {
      const Index mb = std::min(kTriBlock, d - j0), j1 = j0 + mb;
      auto xb = x.block(j0, c0, mb, p);
      for (Index k0 = j1; k0 < d; k0 += kTriDepth) {
        const Index kt = std::min(kTriDepth, d - k0);
        xb.noalias() -= l.block(k0, j0, kt, mb).transpose() * x.block(k0, c0, kt, p);
      }
      l.block(j0, j0, mb, mb).triangularView<Eigen::Lower>().transpose().solveInPlace(xb);
    }
  }
}

void lower_outer(double alpha, const Eigen::Ref<const Matrix>& a, const Eigen::Ref<const Matrix>& b,
                 Eigen::Ref<Matrix> g) {
  const Index d = g.rows(), s = a.cols();
  constexpr Index kRows = 4 * kTriBlock;  // rows of a per product (its depth is at most kTriPanel)
  for (Index j0 = 0; j0 < d; j0 += kTriBlock) {
    const Index nb = std::min(kTriBlock, d - j0);
    g.block(0, j0, j0, nb).setZero();
    for (Index i0 = j0; i0 < d; i0 += kRows) {
      const Index mb = std::min(kRows, d - i0);
      auto gb = g.block(i0, j0, mb, nb);
      if (s == 0) gb.setZero();
      for (Index c0 = 0; c0 < s; c0 += kTriPanel) {
        const Index p = std::min(kTriPanel, s - c0);
        if (c0 == 0)
          gb.noalias() = alpha * a.block(i0, c0, mb, p) * b.block(j0, c0, nb, p).transpose();
        else
          gb.noalias() += alpha * a.block(i0, c0, mb, p) * b.block(j0, c0, nb, p).transpose();
      }
    }
    g.block(j0, j0, nb, nb).triangularView<Eigen::StrictlyUpper>().setZero();
  }
}

}  // namespace fastvi
