// categorical_logit_glm(y | X, alpha, beta) (Stan's categorical_logit_glm_lpmf, categories counted
// from 0): y_n in {0, ..., C-1}, X (N x K) data, alpha (C,) intercepts, beta (K x C) coefficients;
//
//   eta_n = alpha + x_n beta (a row of C logits),   log p = sum_n eta_{n, y_n} - log_sum_exp(eta_n)
//   R = onehot(y) - softmax(eta) (rows),   d/d beta = X^T R,   d/d alpha = column sums of R.
//
// There is no offset: one added to every category of a row cancels in the softmax.
//
// The same streaming scheme as the vector GLMs (glm.cpp), with a matrix-valued coefficient: for a
// block of rows of X and a panel of draws, the logits of all of them are one GEMM,
// X_blk [beta_1 .. beta_p] (blk x K times K x C p); the softmax turns them in place into residuals
// (vectorised over the block's rows, one category column at a time); and X_blk^T R adds the panel's
// beta gradients while the block is in cache. X is read from memory once per evaluation. The
// draws' beta (row-major K x C in Batch::value) are first copied into one column-major
// K x (C S) matrix, column s C + c holding beta_s[:, c], so that a panel is a plain block of it.
//
// Every product is cut as in glm.cpp (gemm_blocking.hpp: at most 240 columns of X and 32 columns
// of logits per product, rows per block from the budget), so Eigen's packing buffers stay on the
// stack; scratch comes from the caller and evaluate() does not allocate. Rows are cut into chunks
// by N, K, C and S alone, each chunk sums into its own slot and the slots are added in chunk
// order, so the result does not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/parallel.hpp"
#include "../gemm_blocking.hpp"

namespace fastvi::kernels {
namespace {

using ConstRowMap = Eigen::Map<const RowMatrix>;
using PanelMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
using ArrayMap = Eigen::Map<Eigen::ArrayXd>;

using gemm_blocking::kMaxPanel;
using gemm_blocking::kMaxTileK;
// Chunks as in glm.cpp: at least 512 rows, at most 64 chunks.
constexpr Index kMinChunkRows = 512;
constexpr Index kMaxChunks = 64;
// Multiply-adds per evaluation below which the kernel stays on one thread (glm.cpp's threshold,
// measured there: waking a second thread costs more than it saves on smaller problems).
constexpr double kParallelWork = 1.0e6;

Index round_up(Index x, Index m) { return (x + m - 1) / m * m; }

class CategoricalLogitGlm final : public Kernel {
 public:
  // ops: y, X, alpha, beta, as registered.
  explicit CategoricalLogitGlm(std::vector<Operand> ops) {
    const Operand& y = ops[0];
    Operand& x = ops[1];
    if (x.shape.size() != 2)
      throw std::invalid_argument("input 'X' must be 2-D (N, K), got shape " + format_shape(x.shape));
    n_ = x.shape[0];
    k_ = x.shape[1];
    if (n_ < 1 || k_ < 1)
      throw std::invalid_argument("input 'X' must have at least one row and one column, got shape " +
                                  format_shape(x.shape));
    alpha_ = std::move(ops[2]);
    beta_ = std::move(ops[3]);
    if (beta_.shape.size() != 2)
      throw std::invalid_argument("input 'beta' must be 2-D (K, C), got shape " + format_shape(beta_.shape));
    if (beta_.shape[0] != k_)
      throw std::invalid_argument("input 'beta' has " + std::to_string(beta_.shape[0]) + " rows but X has " +
                                  std::to_string(k_) + " columns");
    c_ = beta_.shape[1];
    if (c_ < 2)
      throw std::invalid_argument("input 'beta' needs at least 2 categories (columns), got shape " +
                                  format_shape(beta_.shape));
    if (!(alpha_.shape.empty() || (alpha_.shape.size() == 1 && alpha_.shape[0] == c_)))
      throw std::invalid_argument("input 'alpha' must have shape (" + std::to_string(c_) +
                                  ",) (one intercept per category of beta) or be a scalar, got " +
                                  format_shape(alpha_.shape));
    if (y.shape.size() > 1)
      throw std::invalid_argument("input 'y' must be 1-D (N,), got shape " + format_shape(y.shape));
    if (y.size() != n_)
      throw std::invalid_argument("input 'y' has " + std::to_string(y.size()) + " elements but X has " +
                                  std::to_string(n_) + " rows");
    y_.resize(size_t(n_));
    for (Index i = 0; i < n_; ++i) {
      const double v = y.data[i];  // a count (checked by the registry's support)
      if (v >= double(c_))
        throw std::invalid_argument("input 'y' must be a category 0.." + std::to_string(c_ - 1) +
                                    " (beta's columns), got " + format_number(v) + " at flat index " +
                                    std::to_string(i));
      y_[size_t(i)] = Index(v);
    }
    x_ = std::move(x.data);  // row-major N x K, as numpy laid it out
    for (Index i = 0; i < x_.size(); ++i)
      if (!std::isfinite(x_[i])) throw std::invalid_argument("input 'X' must be finite, got a non-finite value");
    if (!beta_.is_param)  // X beta once, column-major N x C
      xb_ = ConstRowMap(x_.data(), n_, k_) * ConstRowMap(beta_.data.data(), k_, c_);
  }

  Index scratch_size(Index draws, int threads) const override {
    const Layout l = layout(draws);
    return l.shared + l.per_thread * thread_count(l, threads);
  }

  void evaluate(const Batch& b) const override {
    const Index S = b.draws;
    const Layout l = layout(S);
    const int threads = thread_count(l, b.threads);
    double* part = b.scratch;
    double* beta_pack = b.scratch + l.part;
    double* thread_scratch = b.scratch + l.shared;
    if (beta_.is_param)  // column s C + c of the K x C S pack is beta_s[:, c]
      for (Index s = 0; s < S; ++s) {
        const double* src = b.value + s * b.ld + beta_.row;
        for (Index c = 0; c < c_; ++c)
          for (Index k = 0; k < k_; ++k) beta_pack[(s * c_ + c) * k_ + k] = src[k * c_ + c];
      }
    const double work = double(n_) * double(S) * double(c_) * double(beta_.is_param ? 2 * k_ : 8);
    // Both branches run the same chunks into the same slots (see glm.cpp on why not an if() clause).
    if (threads > 1 && l.chunks > 1 && work >= kParallelWork) {
      note_parallel_team();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
      for (Index c = 0; c < l.chunks; ++c)
        run_chunk(b, l, c, part, beta_pack, thread_scratch + omp_get_thread_num() * l.per_thread);
    } else {
      for (Index c = 0; c < l.chunks; ++c) run_chunk(b, l, c, part, beta_pack, thread_scratch);
    }

    // Serial reduction in chunk order, then each draw's terms.
    Eigen::Map<Vector> total(part, l.slot);
    for (Index c = 1; c < l.chunks; ++c) total += Eigen::Map<const Vector>(part + c * l.slot, l.slot);
    const Eigen::Map<const Matrix> g_beta(part, k_, c_ * S);
    const Eigen::Map<const Matrix> g_alpha(part + l.g_alpha, c_, S);
    for (Index s = 0; s < S; ++s) {
      b.lp[s] += part[l.lp + s];
      if (alpha_.is_param) {
        double* g = b.grad + s * b.ld + alpha_.row;
        if (alpha_.size() == 1)
          g[0] += g_alpha.col(s).sum();
        else
          for (Index c = 0; c < c_; ++c) g[c] += g_alpha(c, s);
      }
      if (beta_.is_param) {
        double* g = b.grad + s * b.ld + beta_.row;
        for (Index k = 0; k < k_; ++k)
          for (Index c = 0; c < c_; ++c) g[k * c_ + c] += g_beta(k, s * c_ + c);
      }
    }
  }

 private:
  // How rows, draws and scratch are cut for S draws: a function of N, K, C and S alone.
  struct Layout {
    Index panel = 1;     // draws per panel
    Index cols = 2;      // logit columns per panel, C panel
    Index col_tile = 2;  // logit columns per product (<= kMaxPanel, or C if C is smaller)
    Index tile = 1;      // columns of X per product
    Index blk = 8, chunk_rows = 1, chunks = 1;
    // A chunk's slot: the beta gradient K x C S, then the alpha sums C x S, then lp (S).
    Index slot = 0, g_alpha = 0, lp = 0;
    Index part = 0;    // doubles of all slots
    Index shared = 0;  // part, then the packed beta
    Index per_thread = 0;
  };

  Layout layout(Index draws) const {
    Layout l;
    l.panel = std::clamp<Index>(kMaxPanel / c_, 1, std::max<Index>(1, draws));
    l.cols = c_ * l.panel;
    l.col_tile = std::min(l.cols, kMaxPanel);
    l.tile = std::min(k_, kMaxTileK);
    // With beta data there is no product: the logits are copied from X beta.
    l.blk = beta_.is_param ? gemm_blocking::block_rows(l.tile, l.col_tile) : gemm_blocking::kMaxBlockRows;
    l.blk = std::min(l.blk, round_up(n_, 8));  // a multiple of 8: every scratch column 64-byte aligned
    l.chunk_rows = round_up(std::max({kMinChunkRows, 4 * draws, (n_ + kMaxChunks - 1) / kMaxChunks}), l.blk);
    l.chunks = (n_ + l.chunk_rows - 1) / l.chunk_rows;
    l.g_alpha = beta_.is_param ? k_ * c_ * draws : 0;
    l.lp = l.g_alpha + c_ * draws;
    l.slot = l.lp + draws;
    l.part = round_up(l.slot * l.chunks, 8);
    l.shared = l.part + (beta_.is_param ? round_up(k_ * c_ * draws, 8) : 0);
    // Per thread: the panel's logits (blk x cols) and three columns (row maxima, sums, y's logits).
    l.per_thread = round_up(l.blk * (l.cols + 3), 8);
    return l;
  }

  static int thread_count(const Layout& l, int threads) {
    return int(std::max<Index>(1, std::min<Index>(threads, l.chunks)));
  }

  double alpha(const Batch& b, Index s, Index c) const {
    const Index e = alpha_.size() == 1 ? 0 : c;
    return alpha_.is_param ? b.value[s * b.ld + alpha_.row + e] : alpha_.data[e];
  }

  // Rows [c * chunk_rows, ...) into chunk c's slot.
  void run_chunk(const Batch& b, const Layout& l, Index chunk, double* part, const double* beta_pack,
                 double* scratch) const {
    const Index S = b.draws;
    double* slot = part + chunk * l.slot;
    std::fill(slot, slot + l.slot, 0.0);
    Eigen::Map<Matrix> g_beta(slot, k_, c_ * S);
    const Eigen::Map<const Matrix> pack(beta_pack, k_, c_ * S);
    const ConstRowMap x(x_.data(), n_, k_);
    const Index begin = chunk * l.chunk_rows, end = std::min(n_, begin + l.chunk_rows);
    for (Index r0 = begin; r0 < end; r0 += l.blk) {
      const Index n = std::min(l.blk, end - r0);
      for (Index s0 = 0; s0 < S; s0 += l.panel) {
        const Index p = std::min(l.panel, S - s0), w = p * c_;
        PanelMap eta(scratch, n, w, Eigen::OuterStride<>(l.blk));
        if (beta_.is_param) {
          for (Index j0 = 0; j0 < w; j0 += l.col_tile) {
            const Index jt = std::min(l.col_tile, w - j0);
            for (Index k0 = 0; k0 < k_; k0 += l.tile) {
              const Index kt = std::min(l.tile, k_ - k0);
              if (k0 == 0)
                eta.middleCols(j0, jt).noalias() = x.block(r0, k0, n, kt) * pack.block(k0, s0 * c_ + j0, kt, jt);
              else
                eta.middleCols(j0, jt).noalias() += x.block(r0, k0, n, kt) * pack.block(k0, s0 * c_ + j0, kt, jt);
            }
          }
        } else {
          for (Index j = 0; j < p; ++j) eta.middleCols(j * c_, c_) = xb_.middleRows(r0, n);
        }
        for (Index j = 0; j < p; ++j) {
          const Index s = s0 + j;
          slot[l.lp + s] += residuals(b, s, scratch + j * c_ * l.blk, l.blk, n, r0, scratch + l.blk * l.cols,
                                      slot + l.g_alpha + s * c_);
        }
        if (beta_.is_param)
          for (Index j0 = 0; j0 < w; j0 += l.col_tile) {
            const Index jt = std::min(l.col_tile, w - j0);
            for (Index k0 = 0; k0 < k_; k0 += l.tile) {
              const Index kt = std::min(l.tile, k_ - k0);
              g_beta.block(k0, s0 * c_ + j0, kt, jt).noalias() +=
                  x.block(r0, k0, n, kt).transpose() * eta.middleCols(j0, jt);
            }
          }
      }
    }
  }

  // The C logit columns of draw s for rows [r0, r0 + n) (column c at eta + c * ld, before alpha)
  // become the residuals onehot(y) - softmax, in place; returns the rows' log density and adds the
  // residuals' column sums to g_alpha. Vectorised over the rows, one category at a time, with the
  // row maxima subtracted before exp. tmp holds three columns of ld.
  double residuals(const Batch& b, Index s, double* eta, Index ld, Index n, Index r0, double* tmp,
                   double* g_alpha) const {
    ArrayMap m(tmp, n), sum(tmp + ld, n), z(tmp + 2 * ld, n);
    auto col = [&](Index c) { return ArrayMap(eta + c * ld, n); };
    for (Index c = 0; c < c_; ++c) {
      const double a = alpha(b, s, c);
      if (a != 0.0) col(c) += a;
    }
    m = col(0);
    for (Index c = 1; c < c_; ++c) m = m.max(col(c));
    for (Index i = 0; i < n; ++i) z[i] = eta[y_[size_t(r0 + i)] * ld + i];
    sum.setZero();
    for (Index c = 0; c < c_; ++c) {
      col(c) = (col(c) - m).exp();
      sum += col(c);
    }
    const double lp = (z - m - sum.log()).sum();
    sum = sum.inverse();
    for (Index c = 0; c < c_; ++c) col(c) *= -sum;
    for (Index i = 0; i < n; ++i) eta[y_[size_t(r0 + i)] * ld + i] += 1.0;
    for (Index c = 0; c < c_; ++c) g_alpha[c] += col(c).sum();
    return lp;
  }

  std::vector<Index> y_;
  Vector x_;
  Matrix xb_;  // X beta for a data beta (N x C), else empty
  Index n_ = 0, k_ = 0, c_ = 0;
  Operand alpha_, beta_;
};

}  // namespace

void register_categorical_logit_glm(KernelRegistry& r) {
  r.add({"categorical_logit_glm",
         "Multi-logit regression: y_n ~ Categorical(softmax(alpha + X[n] beta)) for y in {0, ..., C-1}, fused over "
         "the rows of X",
         {{"y", Support::Count, true, std::nullopt, "category (N,), data, from 0"},
          {"X", Support::Real, true, std::nullopt, "design matrix (N, K), data"},
          {"alpha", Support::Real, false, 0.0, "intercepts (C,) (or a scalar, which cancels)"},
          {"beta", Support::Real, false, std::nullopt, "coefficients (K, C)"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<CategoricalLogitGlm>(std::move(ops));
         }});
}

}  // namespace fastvi::kernels
