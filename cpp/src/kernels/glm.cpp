// Fused GLM likelihoods (Stan's *_glm_lpmf), for a data design matrix X (N x K) and S draws of
// the parameters at once:
//
//   normal_id_glm(y | X, alpha, beta, scale, offset)   y_n ~ Normal(eta_n, scale)  (scale also as `sigma`)
//   bernoulli_logit_glm(y | X, alpha, beta, offset)    y_n ~ Bernoulli(inv_logit(eta_n))
//   poisson_log_glm(y | X, alpha, beta, offset)        y_n ~ Poisson(exp(eta_n))
//   neg_binomial_2_log_glm(y | X, alpha, beta, phi, offset)
//                                                      y_n ~ NegBinomial2(exp(eta_n), phi)
//
// with eta_n = offset_n + alpha + x_n . beta; offset is data, a scalar or one value per row (a
// Poisson regression's log exposure), 0 by default. A scalar offset is added with alpha; a vector
// is folded into X beta when beta is data, and otherwise added to each column of predictors
// before the family's column pass. One driver serves all three. It streams over blocks of rows of
// X: for a block it forms the linear predictors of a panel of draws with one GEMM
// (eta = X_blk B + alpha), turns them in place into the residuals r = d lp / d eta while summing
// the log density, and adds X_blk^T r to the gradient of beta while the block is still in cache;
// X is read from memory once per evaluation.
//
// Minibatches (Kernel::data_rows, Batch::rows): the driver gathers the batch's rows of X (widened
// to double), y, offsets and X beta into scratch and runs on those, adding row_weight times their
// terms and the full data's constant terms; the cost is O(batch rows x K), whatever N.
//
// Determinism: rows are cut into chunks by N, K and S alone (never by the thread count). Each
// chunk sums into its own slot, whichever thread runs it, and the slots are added in chunk order
// afterwards, so 1 thread and 2 threads give bit-identical results.
//
// For a few draws (S <= glm_rows::max_draws(K), 2 to 8) with beta a parameter, the products are
// GEMVs or thin GEMMs, bound by reading X or by Eigen's packing, and the driver uses glm_rows.hpp's
// single-pass row kernel instead: each row's dot products and axpys while the row is in L1. Which
// path runs depends on S and K alone, so results still do not depend on the thread count.
//
// A family with a scalar parameter of its own (neg_binomial_2_log_glm's phi, kHasPhi) gets its
// value per draw in its column pass and sums d lp / d phi over the rows into one more partial sum.
//
// The families' column passes are in glm_families.hpp and glm_neg_binomial.hpp.
//
// The GEMM path's products are Eigen's, or an external BLAS's dgemm (fastvi/blas.hpp: scipy's,
// handed over by the Python package) when one was set as the kernel was built: about 1.2-1.3x
// Eigen's rate on AVX2 CPUs for these block shapes. Each call multiplies one block, on the thread
// that runs its chunk; the blocks are cut by K and S alone (gemm_blocking::blas_block_rows), so
// results still do not depend on the thread count.
//
// Scratch comes from the caller (scratch_size, Batch::scratch); evaluate() does not allocate and
// keeps no state, so one kernel serves concurrent fits. The GEMMs are kept small enough for
// Eigen to put its packing buffers on the stack (tests/cpp/alloc_check verifies this, with the
// external BLAS too).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <type_traits>

#include "builtin.hpp"
#include "fastvi/blas.hpp"
#include "fastvi/broadcast.hpp"
#include "fastvi/format.hpp"
#include "fastvi/math.hpp"
#include "fastvi/parallel.hpp"
#include "../gemm_blocking.hpp"
#include "glm_rows.hpp"
#include "glm_tuning.hpp"
#include "glm_families.hpp"
#include "glm_neg_binomial.hpp"

namespace fastvi::kernels {
namespace {

using ConstRowMap = Eigen::Map<const RowMatrix>;
using DrawMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;  // K x S block of Batch::value
using PanelMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;

using gemm_blocking::kMaxPanel;
using gemm_blocking::kMaxTileK;
// Rows per chunk: at least kMinChunkRows and 4 S (so the per-chunk partial sums stay small next
// to the chunk's rows of X), and enough that there are at most kMaxChunks chunks.
constexpr Index kMinChunkRows = 512;
constexpr Index kMaxChunks = 64;
// Multiply-adds per evaluation below which a kernel stays on one thread: waking a second
// (passively waiting) thread costs tens of microseconds, more than it saves on smaller problems.
// bench/cpp's threshold sweep measures it (bench/README.md); on the shared 2-core machine it was
// run on, 2 threads were 0.6-0.75x as fast as 1 up to 2e5 multiply-adds, so 1e6 was kept.
// glm_tuning::set_parallel_work overrides it, for that measurement.
constexpr double kParallelWork = 1.0e6;
std::atomic<double> g_parallel_work{kParallelWork};
double parallel_work() { return g_parallel_work.load(std::memory_order_relaxed); }
// Draws up to which the single-pass row kernel runs instead of the GEMM path:
// glm_rows::max_draws(K) (where the measurement is described). glm_tuning::set_fused_max_draws
// overrides it for every K, for that measurement.
std::atomic<Index> g_fused_max_draws{-1};
Index fused_max_draws(Index k) {
  const Index value = g_fused_max_draws.load(std::memory_order_relaxed);
  return value >= 0 ? value : glm_rows::max_draws(k);
}

Index round_up(Index x, Index m) { return (x + m - 1) / m * m; }

// The family's column pass, with its own parameter for the families that have one.
template <class F>
inline void column(const double* y, double* eta, double* tmp, Index n, double offset, double phi, double& acc,
                   double& rsum, double& dphi) {
  if constexpr (F::kHasPhi) {
    F::column(y, eta, tmp, n, offset, phi, acc, rsum, dphi);
  } else {
    (void)phi;
    (void)dphi;
    F::column(y, eta, tmp, n, offset, acc, rsum);
  }
}

template <class F>
class Glm final : public Kernel {
 public:
  // ops: y, X, alpha, beta[, scale or phi], offset, as registered (sigma_ holds the scale, phi_ phi).
  explicit Glm(std::vector<Operand> ops) {
    Operand& y = ops[0];
    Operand& x = ops[1];
    if (x.shape.size() != 2) throw std::invalid_argument("X must be 2-D (N, K), got shape " + format_shape(x.shape));
    n_ = x.shape[0];
    k_ = x.shape[1];
    if (n_ < 1 || k_ < 1)
      throw std::invalid_argument("X must have at least one row and one column, got shape " + format_shape(x.shape));
    if (y.shape.size() > 1) throw std::invalid_argument("y must be 1-D (N,), got shape " + format_shape(y.shape));
    if (y.size() != n_)
      throw std::invalid_argument("y has " + std::to_string(y.size()) + " elements but X has " + std::to_string(n_) +
                                  " rows");
    alpha_ = std::move(ops[2]);
    beta_ = std::move(ops[3]);
    if (alpha_.size() != 1)
      throw std::invalid_argument("alpha must be a scalar, got shape " + format_shape(alpha_.shape));
    if (beta_.shape.size() > 1)
      throw std::invalid_argument("beta must be 1-D (K,), got shape " + format_shape(beta_.shape));
    if (beta_.size() != k_)
      throw std::invalid_argument("beta has " + std::to_string(beta_.size()) + " elements but X has " +
                                  std::to_string(k_) + " columns");
    if constexpr (F::kHasSigma) {
      sigma_ = std::move(ops[4]);
      if (sigma_.size() != 1)
        throw std::invalid_argument("scale must be a scalar, got shape " + format_shape(sigma_.shape));
    }
    if constexpr (F::kHasPhi) {
      phi_ = std::move(ops[4]);
      if (phi_.size() != 1) throw std::invalid_argument("phi must be a scalar, got shape " + format_shape(phi_.shape));
    }
    const Operand& offset = ops[F::kHasSigma || F::kHasPhi ? 5 : 4];
    if (offset.size() == 1 && offset.shape.size() <= 1) {
      offset_scalar_ = offset.data[0];
    } else if (offset.shape.size() == 1 && offset.size() == n_) {
      offset_ = offset.data;
    } else {
      throw std::invalid_argument("offset must be a scalar or 1-D (N,) with N = " + std::to_string(n_) +
                                  " (the rows of X), got shape " + format_shape(offset.shape));
    }
    y_ = std::move(y.data);
    // X is row-major N x K, as numpy laid it out, read where it lies (a view of the caller's
    // float64 or float32 array) or from this kernel's copy. The row kernel relies on X being
    // finite (add_factor checks data inputs; this repeats it for kernels built directly).
    if (x.has_view()) {
      x_ = x.view;
      x32_ = x.view_is_float32;
      x_owner_ = std::move(x.view_owner);
    } else {
      x_copy_ = std::move(x.data);
      x_ = x_copy_.data();
    }
    x32_ ? init_x<float>() : init_x<double>();
    lp_const_ = F::constant(y_);
    if constexpr (F::kHasPhi) {
      // The distinct values of y and their counts, for the terms in y and phi alone; with phi data
      // their sum is a constant.
      std::vector<double> sorted(y_.data(), y_.data() + y_.size());
      std::sort(sorted.begin(), sorted.end());
      std::vector<double> values, counts;
      for (double v : sorted) {
        if (values.empty() || v != values.back()) {
          values.push_back(v);
          counts.push_back(0.0);
        }
        counts.back() += 1.0;
      }
      y_values_ = Eigen::Map<const Vector>(values.data(), Index(values.size()));
      y_counts_ = Eigen::Map<const Vector>(counts.data(), Index(counts.size()));
      if (!phi_.is_param) {
        double unused = 0.0;
        F::phi_terms(phi_.data[0], y_values_.data(), y_counts_.data(), y_values_.size(), lp_const_, unused);
      }
    }
  }

  Index data_rows() const override { return n_; }

  Index scratch_size(Index draws, int threads) const override { return scratch_for(layout(draws, n_, x32_), threads); }

  // A minibatch's rows gathered (gather()), then the scratch of an evaluation on that many rows.
  Index subsample_scratch_size(Index draws, int threads, Index rows) const override {
    if (rows < 1) return 0;
    return gather_size(rows) + scratch_for(layout(draws, rows, false), threads);
  }

  void evaluate(const Batch& b) const override {
    if (!b.rows) return evaluate_rows(b, all_rows(), 1.0, b.scratch);
    // A minibatch: its rows' terms, times row_weight (N / rows for an unbiased estimate), plus the
    // full data's constant terms, which need no estimate.
    evaluate_rows(b, gather(b.rows, b.row_count, b.scratch), b.row_weight, b.scratch + gather_size(b.row_count));
  }

 private:
  // The rows an evaluation reads: all of X's, in place, or a minibatch's, gathered into scratch.
  struct Rows {
    const void* x = nullptr;  // n x K, row-major, float when x32
    bool x32 = false;
    const void* tail = nullptr;  // rows tail_begin.. of x again, padded for the row kernel's last read
    Index tail_begin = 0;
    const double* y = nullptr;
    const double* offset = nullptr;  // a vector offset's n values, or null
    const double* xb = nullptr;      // X beta (+ alpha and offsets) for a data beta, or null
    Index n = 0;
    bool subsample = false;
  };

  Rows all_rows() const {
    return {x_,
            x32_,
            tail_.data(),
            tail_begin_,
            y_.data(),
            offset_.size() > 0 ? offset_.data() : nullptr,
            xb_.size() > 0 ? xb_.data() : nullptr,
            n_,
            false};
  }

  // Doubles gather() writes for `rows` rows: X's rows (with a padding packet; none for a data
  // beta, which only needs X beta), y, the offsets and X beta, each a multiple of 8 doubles.
  Index gather_size(Index rows) const {
    return (beta_.is_param ? round_up(rows * k_ + glm_rows::kWidth, 8) : 0) + 3 * round_up(rows, 8);
  }

  // Copies the minibatch's rows (in its order, repeats included) into out: X widened to double.
  Rows gather(const Index* rows, Index count, double* out) const {
    double* gx = out;
    double* gy = gx + (beta_.is_param ? round_up(count * k_ + glm_rows::kWidth, 8) : 0);
    double* goff = gy + round_up(count, 8);
    double* gxb = goff + round_up(count, 8);
    for (Index i = 0; i < count; ++i) {
      const Index r = rows[i];
      if (beta_.is_param) {
        if (x32_) {
          const float* src = static_cast<const float*>(x_) + r * k_;
          for (Index k = 0; k < k_; ++k) gx[i * k_ + k] = double(src[k]);
        } else {
          const double* src = static_cast<const double*>(x_) + r * k_;
          std::copy(src, src + k_, gx + i * k_);
        }
      }
      gy[i] = y_[r];
      if (offset_.size() > 0) goff[i] = offset_[r];
      if (xb_.size() > 0) gxb[i] = xb_[r];
    }
    if (beta_.is_param) std::fill(gx + count * k_, gx + count * k_ + glm_rows::kWidth, 0.0);
    return {gx, false, gx, 0, gy, offset_.size() > 0 ? goff : nullptr, xb_.size() > 0 ? gxb : nullptr, count, true};
  }

  // The evaluation proper, on rows R, adding weight times their terms (and the constant terms).
  void evaluate_rows(const Batch& b, const Rows& R, double weight, double* scratch) const {
    const Index S = b.draws;
    const Layout l = layout(S, R.n, R.x32);
    const int threads = thread_count(l, b.threads);
    // The scratch: the chunks' partial sums and the padded beta, then one equal share per thread,
    // each a multiple of 8 doubles so that every thread's buffers are aligned alike.
    Eigen::Map<Matrix> part(scratch, l.part_rows, l.chunks * S);
    double* beta_pad = scratch + round_up(l.part_rows * l.chunks * S, 8);
    double* thread_scratch = scratch + l.shared;
    // With beta as data there is no GEMM; the exp/log per element is counted as ~8 multiply-adds.
    const double work = double(R.n) * double(S) * double(beta_.is_param ? k_ : 8);
    const bool parallel = threads > 1 && l.chunks > 1 && work >= parallel_work();
    if (l.fused) {
      std::fill(beta_pad, beta_pad + l.padded_k * S, 0.0);
      for (Index s = 0; s < S; ++s)
        for (Index k = 0; k < k_; ++k) beta_pad[s * l.padded_k + k] = b.value[s * b.ld + beta_.row + k];
    }
    // Both branches run the same chunks into the same slots. (Not one loop with an if() clause:
    // libgomp mallocs and frees a team for every one-thread region.) Chunks are handed out one
    // at a time: with another process on one of the cores, the thread that has a core to itself
    // takes more of them, where a static split would make the step wait for the slowed thread.
    // Which thread runs a chunk changes nothing in the result.
    if (parallel) {
      note_parallel_team();
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
      for (Index c = 0; c < l.chunks; ++c)
        run_chunk(b, R, l, c, part, beta_pad, thread_scratch + omp_get_thread_num() * l.per_thread);
    } else {
      for (Index c = 0; c < l.chunks; ++c) run_chunk(b, R, l, c, part, beta_pad, thread_scratch);
    }

    // Serial reduction in chunk order, then the per-draw terms. (weight is 1 for all rows, and
    // multiplying by it changes no bit.)
    auto total = part.leftCols(S);
    for (Index c = 1; c < l.chunks; ++c) total += part.middleCols(c * S, S);
    const Index acc_row = l.part_rows - 2, rsum_row = l.part_rows - 1, dphi_row = l.part_rows - 3;
    for (Index s = 0; s < S; ++s) {
      const double acc = total(acc_row, s), rsum = total(rsum_row, s);
      if constexpr (F::kHasPhi) {
        if (phi_.is_param) {
          double lp_phi = 0.0, dphi = total(dphi_row, s);
          const double phi_s = b.value[s * b.ld + phi_.row];
          if (R.subsample)  // each row of the minibatch once
            F::phi_terms(phi_s, R.y, nullptr, R.n, lp_phi, dphi);
          else
            F::phi_terms(phi_s, y_values_.data(), y_counts_.data(), y_values_.size(), lp_phi, dphi);
          b.lp[s] += weight * lp_phi;
          b.grad[s * b.ld + phi_.row] += weight * dphi;
        }
      }
      double scale = 1.0;  // d lp / d eta = scale * r
      if constexpr (F::kHasSigma) {
        const double sigma = sigma_.is_param ? b.value[s * b.ld + sigma_.row] : sigma_.data[0];
        scale = 1.0 / (sigma * sigma);
        b.lp[s] += weight * (-0.5 * acc * scale - double(R.n) * std::log(sigma)) + lp_const_;
        if (sigma_.is_param) b.grad[s * b.ld + sigma_.row] += weight * ((acc * scale - double(R.n)) / sigma);
      } else {
        b.lp[s] += weight * acc + lp_const_;
      }
      const double weighted = weight * scale;
      if (alpha_.is_param) b.grad[s * b.ld + alpha_.row] += weighted * rsum;
      if (beta_.is_param) {
        double* g = b.grad + s * b.ld + beta_.row;
        for (Index k = 0; k < k_; ++k) g[k] += weighted * total(k, s);
      }
    }
  }

  // How n rows and the scratch are cut for S draws: a function of n, K and S alone (never of the
  // thread count), so that every thread count gives the same chunks, sums and results.
  struct Layout {
    Index panel = 1, tile = 1, blk = 8, chunk_rows = 1, chunks = 1, part_rows = 2;
    bool fused = false;
    Index padded_k = 0, fused_eta = 0, pass_rows = 32;
    Index shared = 0;      // doubles before the per-thread shares: part, then the padded beta
    Index per_thread = 0;  // doubles per thread: eta panel and tmp column, or the fused path's buffers
  };

  Layout layout(Index draws, Index n, bool x32) const {
    Layout l;
    l.panel = std::max<Index>(1, std::min(draws, kMaxPanel));
    l.tile = std::min(k_, kMaxTileK);
    // With beta data there is no backward product, and X_blk B is one column per draw.
    l.blk = !beta_.is_param ? gemm_blocking::kMaxBlockRows
            : dgemm_        ? gemm_blocking::blas_block_rows(l.tile, l.panel)
                            : gemm_blocking::block_rows(l.tile, l.panel);
    l.blk = std::min(l.blk, round_up(n, 8));  // a multiple of 8 keeps every scratch column 64-byte aligned
    l.chunk_rows = round_up(std::max({kMinChunkRows, 4 * draws, (n + kMaxChunks - 1) / kMaxChunks}), l.blk);
    l.chunks = (n + l.chunk_rows - 1) / l.chunk_rows;
    l.part_rows = (beta_.is_param ? k_ : 0) + 2 + (F::kHasPhi ? 1 : 0);  // [beta], [dphi], acc, rsum
    l.fused = beta_.is_param && draws <= fused_max_draws(k_);
    l.shared = round_up(l.part_rows * l.chunks * draws, 8);
    if (l.fused) {
      // Per draw, beta padded with zeros to whole packets; per thread, the padded gradient of
      // every draw, then the pass's predictors and the column's scratch. Every thread's eta buffer
      // is 64-byte aligned alike: Eigen's vectorised sums in F::column start with scalar steps up
      // to the first aligned element, so their rounding depends on the address, and results must
      // not depend on which thread ran a chunk.
      l.padded_k = glm_rows::packets(k_) * glm_rows::kWidth;
      l.shared += round_up(l.padded_k * draws, 8);
      l.fused_eta = round_up(l.padded_k * draws + 3 * draws, 8);
      l.per_thread = l.fused_eta + 2 * glm_rows::kMaxRows;
      l.pass_rows = glm_rows::pass_rows(k_);
      // A float32 X with several draws: each pass's rows widened once into a double buffer, at
      // the padded row stride, that both products of every draw then read (converting in every
      // product cost 1.2x float64's time at S = 8). With one draw each packet is widened as the
      // products read it: widening the pass first, whether before the dot products or by them
      // (storing each widened packet for the axpy), was no faster with AVX-512 and 1.1x slower
      // with AVX2 (N = 10^4, K = 50).
      if (x32 && draws > 1) l.per_thread += glm_rows::kMaxRows * l.padded_k;
    } else {
      l.per_thread = l.blk * (l.panel + 1) + (x32 && beta_.is_param ? l.blk * k_ : 0);
    }
    l.per_thread = round_up(l.per_thread, 8);
    return l;
  }

  static Index scratch_for(const Layout& l, int threads) { return l.shared + l.per_thread * thread_count(l, threads); }

  // Threads worth using: at most one per chunk.
  static int thread_count(const Layout& l, int threads) {
    return int(std::max<Index>(1, std::min<Index>(threads, l.chunks)));
  }

  // alpha plus the scalar offset for draw s, or what eta still lacks of them (the data ones are
  // folded into xb_ when beta is data).
  double offset(const Batch& b, Index s) const {
    const double alpha = alpha_.is_param ? b.value[s * b.ld + alpha_.row] : beta_.is_param ? alpha_.data[0] : 0.0;
    return beta_.is_param ? alpha + offset_scalar_ : alpha;
  }

  // The family's own parameter for draw s (phi), or 0 for families without one.
  double phi(const Batch& b, Index s) const {
    if constexpr (F::kHasPhi) return phi_.is_param ? b.value[s * b.ld + phi_.row] : phi_.data[0];
    (void)b;
    (void)s;
    return 0.0;
  }

  // Adds rows [r0, r0 + n) of a vector offset to a column of predictors X beta (beta a parameter;
  // with beta data the offset is in xb_ already).
  static void add_offset(const Rows& R, double* eta, Index r0, Index n) {
    if (R.offset) Eigen::Map<Vector>(eta, n) += Eigen::Map<const Vector>(R.offset + r0, n);
  }

  // One product of a block through the external BLAS (dgemm_), with X_blk the row-major rows at
  // x (leading dimension ldx = K): c (m x n, column-major, leading dimension ldc) = [c +]
  // X_blk b when !backward (X_blk m x k, b k x n), or [c +] X_blkᵀ b when backward (X_blk k x m).
  // Row-major X_blk is the column-major matrix X_blkᵀ, hence the transpose flags.
  void blas_product(bool backward, Index m, Index n, Index k, const double* x, Index ldx, const double* b, Index ldb,
                    bool accumulate, double* c, Index ldc) const {
    const int im = int(m), in = int(n), ik = int(k), ilda = int(ldx), ildb = int(ldb), ildc = int(ldc);
    if (backward) return blas::add_product(dgemm_, im, in, ik, x, ilda, b, ildb, c, ildc);  // (accumulates)
    const double one = 1.0, beta = accumulate ? 1.0 : 0.0;
    dgemm_("T", "N", &im, &in, &ik, &one, x, &ilda, b, &ildb, &beta, c, &ildc);
  }

  // Rows [c * chunk_rows, ...) of chunk c into its own slot of part.
  void run_chunk(const Batch& b, const Rows& R, const Layout& l, Index c, Eigen::Map<Matrix>& part,
                 const double* beta_pad, double* scratch) const {
    if (l.fused)
      return R.x32 ? run_chunk_fused<float>(b, R, l, c, part, beta_pad, scratch)
                   : run_chunk_fused<double>(b, R, l, c, part, beta_pad, scratch);
    const Index S = b.draws;
    auto slot = part.middleCols(c * S, S);
    slot.setZero();
    const Index begin = c * l.chunk_rows, end = std::min(R.n, begin + l.chunk_rows);
    const Index acc_row = l.part_rows - 2, rsum_row = l.part_rows - 1;
    const Index dphi_row = F::kHasPhi ? l.part_rows - 3 : acc_row;  // (unused without phi)
    double* tmp = scratch + l.blk * l.panel;
    double* widened = tmp + l.blk;  // a float32 block of rows as doubles (blk x K)
    for (Index r0 = begin; r0 < end; r0 += l.blk) {
      const Index n = std::min(l.blk, end - r0);
      // The block's rows as doubles: in place, or a float32 X widened once for both products.
      const double* rows = widened;
      if (!beta_.is_param) {
        rows = nullptr;  // X beta is xb_
      } else if (R.x32) {
        const float* src = static_cast<const float*>(R.x) + r0 * k_;
        for (Index i = 0; i < n * k_; ++i) widened[i] = double(src[i]);
      } else {
        rows = static_cast<const double*>(R.x) + r0 * k_;
      }
      const ConstRowMap x(rows, n, k_);
      for (Index s0 = 0; s0 < S; s0 += l.panel) {
        const Index p = std::min(l.panel, S - s0);
        PanelMap eta(scratch, n, p, Eigen::OuterStride<>(l.blk));
        if (beta_.is_param) {
          for (Index k0 = 0; k0 < k_; k0 += l.tile) {
            const Index kt = std::min(l.tile, k_ - k0);
            const double* beta_blk = b.value + s0 * b.ld + beta_.row + k0;
            if (dgemm_) {
              blas_product(false, n, p, kt, rows + k0, k_, beta_blk, b.ld, k0 > 0, scratch, l.blk);
              continue;
            }
            const DrawMap beta(beta_blk, kt, p, Eigen::OuterStride<>(b.ld));
            if (k0 == 0)
              eta.noalias() = x.middleCols(k0, kt) * beta;
            else
              eta.noalias() += x.middleCols(k0, kt) * beta;
          }
        } else {
          for (Index j = 0; j < p; ++j) eta.col(j) = Eigen::Map<const Vector>(R.xb + r0, n);
        }
        for (Index j = 0; j < p; ++j) {
          const Index s = s0 + j;
          if (beta_.is_param) add_offset(R, scratch + j * l.blk, r0, n);
          column<F>(R.y + r0, scratch + j * l.blk, tmp, n, offset(b, s), phi(b, s), slot(acc_row, s), slot(rsum_row, s),
                    slot(dphi_row, s));
        }
        if (beta_.is_param)
          for (Index k0 = 0; k0 < k_; k0 += l.tile) {
            const Index kt = std::min(l.tile, k_ - k0);
            if (dgemm_)
              blas_product(true, kt, p, n, rows + k0, k_, scratch, l.blk, true, &slot(k0, s0), l.part_rows);
            else
              slot.block(k0, s0, kt, p).noalias() += x.middleCols(k0, kt).transpose() * eta;
          }
      }
    }
  }

  // The single-pass path (beta a parameter, S <= fused_max_draws(K)): per pass of pass_rows_
  // rows, each draw forms its predictors, residuals and gradient terms while the rows are in L1.
  template <class T>
  void run_chunk_fused(const Batch& b, const Rows& R, const Layout& l, Index c, Eigen::Map<Matrix>& part,
                       const double* beta_pad, double* scratch) const {
    const Index S = b.draws;
    const Index begin = c * l.chunk_rows, end = std::min(R.n, begin + l.chunk_rows);
    double* grad = scratch;               // S x padded_k
    double* acc = grad + S * l.padded_k;  // S
    double* rsum = acc + S;               // S
    double* dphi = rsum + S;              // S
    double* eta = scratch + l.fused_eta;
    double* tmp = eta + glm_rows::kMaxRows;
    std::fill(grad, dphi + S, 0.0);
    for (Index r0 = begin; r0 < end; r0 += l.pass_rows) {
      const Index n = std::min(l.pass_rows, end - r0);
      // The pass that ends X reads the copy of its last rows, padded (see tail_).
      const T* x = r0 + n == R.n ? static_cast<const T*>(R.tail) + (r0 - R.tail_begin) * k_
                                 : static_cast<const T*>(R.x) + r0 * k_;
      // The next pass's rows (up to the end of X, into the next chunk if need be) are asked for
      // during this pass's first axpy, spread over its rows, so that they stream in from L3 or
      // memory while this pass computes; the hardware prefetcher alone stops short.
      const T* next = static_cast<const T*>(R.x) + (r0 + n) * k_;
      const Index next_rows = std::min(n, R.n - (r0 + n));  // none after the last row of X
      if constexpr (std::is_same_v<T, float>) {
        if (S > 1) {
          // Several draws: the pass's rows widened once into `wide`, at the padded row stride,
          // which every draw's two products then read (see l.per_thread).
          double* wide = tmp + glm_rows::kMaxRows;
          glm_rows::widen_rows(x, k_, n, wide, next, next_rows * k_);
          for (Index s = 0; s < S; ++s) {
            glm_rows::dot_rows(static_cast<const double*>(wide), k_, l.padded_k, n, beta_pad + s * l.padded_k, eta);
            add_offset(R, eta, r0, n);
            column<F>(R.y + r0, eta, tmp, n, offset(b, s), phi(b, s), acc[s], rsum[s], dphi[s]);
            glm_rows::axpy_rows(static_cast<const double*>(wide), k_, l.padded_k, n, eta, grad + s * l.padded_k);
          }
          continue;
        }
      }
      for (Index s = 0; s < S; ++s) {
        glm_rows::dot_rows(x, k_, k_, n, beta_pad + s * l.padded_k, eta);
        add_offset(R, eta, r0, n);
        column<F>(R.y + r0, eta, tmp, n, offset(b, s), phi(b, s), acc[s], rsum[s], dphi[s]);
        glm_rows::axpy_rows(x, k_, k_, n, eta, grad + s * l.padded_k, next, s == 0 ? next_rows : 0);
      }
    }
    auto slot = part.middleCols(c * S, S);
    for (Index s = 0; s < S; ++s) {
      slot.col(s).head(k_) = Eigen::Map<const Vector>(grad + s * l.padded_k, k_);
      slot(l.part_rows - 2, s) = acc[s];
      slot(l.part_rows - 1, s) = rsum[s];
      if constexpr (F::kHasPhi) slot(l.part_rows - 3, s) = dphi[s];
    }
  }

  // The padded copy of X's last rows, and X beta for a data beta, for X of type T. (X's values
  // were checked finite by Model::add_factor, check_support, which is the one way a kernel is
  // built: a second pass here cost a second read of a memory-mapped X, 12.8 GB in
  // bench/out_of_core.py.)
  template <class T>
  void init_x() {
    const T* x = static_cast<const T*>(x_);
    tail_begin_ = std::max<Index>(0, n_ - glm_rows::kMaxRows);
    const Index tail_elements = (n_ - tail_begin_) * k_;
    const Index tail_doubles = (Index(sizeof(T)) * (tail_elements + glm_rows::kWidth) + 7) / 8;
    tail_.assign(size_t(tail_doubles), 0.0);
    std::copy(x + tail_begin_ * k_, x + n_ * k_, static_cast<T*>(static_cast<void*>(tail_.data())));
    // Data-only parts computed once: X beta (+ alpha) for a data beta.
    if (!beta_.is_param) {
      if constexpr (std::is_same_v<T, double>) {
        xb_ = ConstRowMap(x, n_, k_) * beta_.data;
      } else {  // row by row: a float64 copy of X (Eigen's product with a cast) is what a float32 X avoids
        xb_.resize(n_);
        for (Index i = 0; i < n_; ++i) {
          double dot = 0.0;
          for (Index k = 0; k < k_; ++k) dot += double(x[i * k_ + k]) * beta_.data[k];
          xb_[i] = dot;
        }
      }
      xb_.array() += offset_scalar_ + (alpha_.is_param ? 0.0 : alpha_.data[0]);
      if (offset_.size() > 0) xb_ += offset_;
    }
  }

  // X: N x K row-major, float (x32_) or double, at x_: a view kept alive by x_owner_, or x_copy_.
  const void* x_ = nullptr;
  bool x32_ = false;
  std::shared_ptr<const void> x_owner_;
  Vector x_copy_;
  // X's last rows (at most glm_rows::kMaxRows, from row tail_begin_) again, of X's type, then a
  // packet of zeros: the row kernel reads each row's last packet whole, up to kWidth - 1 elements
  // past the row, which for X's last row would be past the array. The pass with X's last row
  // reads this copy instead (a pass has at most kMaxRows rows, so it lies wholly in it).
  std::vector<double> tail_;
  Index tail_begin_ = 0;
  Vector y_, xb_;
  Vector offset_;               // a vector offset (N,), or empty
  double offset_scalar_ = 0.0;  // a scalar offset
  Index n_ = 0, k_ = 0;
  Operand alpha_, beta_, sigma_, phi_;
  // The BLAS for the GEMM path's products, fixed when the kernel is built (blas.hpp); null: Eigen.
  blas::Dgemm dgemm_ = blas::current_dgemm();
  Vector y_values_, y_counts_;  // the distinct values of y and how often each occurs (kHasPhi)
  double lp_const_ = 0.0;
};

template <class F>
KernelFactory glm_factory() {
  return [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
    return std::make_unique<Glm<F>>(std::move(ops));
  };
}

InputInfo x_input() {
  return {"X", Support::Real, true, std::nullopt, "design matrix (N, K), data; float32 or float64, read in place",
          {},  true};
}
InputInfo alpha_input() { return {"alpha", Support::Real, false, 0.0, "intercept (scalar)"}; }
InputInfo beta_input() { return {"beta", Support::Real, false, std::nullopt, "coefficients (K,)"}; }
InputInfo offset_input() {
  return {"offset", Support::Real, true, 0.0,
          "added to the linear predictor: a scalar or (N,), data (e.g. log exposure)"};
}

}  // namespace

void register_glm(KernelRegistry& r) {
  r.add({"normal_id_glm",
         "Normal linear regression: y_n ~ Normal(offset_n + alpha + X[n] . beta, scale), fused over the rows of X",
         {{"y", Support::Real, true, std::nullopt, "outcome (N,), data"},
          x_input(),
          alpha_input(),
          beta_input(),
          {"scale", Support::Positive, false, std::nullopt, "noise standard deviation (scalar)", {"sigma"}},
          offset_input()},
         false,
         glm_factory<glm_families::NormalId>()});
  r.add({"bernoulli_logit_glm",
         "Logistic regression: y_n ~ Bernoulli(inv_logit(offset_n + alpha + X[n] . beta)), fused over the rows of X",
         {{"y", Support::Binary, true, std::nullopt, "outcome (N,) in {0, 1}, data"},
          x_input(),
          alpha_input(),
          beta_input(),
          offset_input()},
         false,
         glm_factory<glm_families::BernoulliLogit>()});
  r.add({"poisson_log_glm",
         "Poisson regression: y_n ~ Poisson(exp(offset_n + alpha + X[n] . beta)), fused over the rows of X",
         {{"y", Support::Count, true, std::nullopt, "counts (N,), data"},
          x_input(),
          alpha_input(),
          beta_input(),
          offset_input()},
         false,
         glm_factory<glm_families::PoissonLog>()});
  r.add({"neg_binomial_2_log_glm",
         "Negative binomial regression: y_n ~ NegBinomial2(exp(offset_n + alpha + X[n] . beta), phi), fused over the "
         "rows of X",
         {{"y", Support::Count, true, std::nullopt, "counts (N,), data"},
          x_input(),
          alpha_input(),
          beta_input(),
          {"phi", Support::Positive, false, std::nullopt, "precision (inverse overdispersion), scalar"},
          offset_input()},
         false,
         glm_factory<glm_families::NegBinomial2Log>()});
}

}  // namespace fastvi::kernels

namespace fastvi::kernels::glm_tuning {

void set_parallel_work(double work) { g_parallel_work.store(work, std::memory_order_relaxed); }
void set_fused_max_draws(Index draws) { g_fused_max_draws.store(draws, std::memory_order_relaxed); }

}  // namespace fastvi::kernels::glm_tuning
