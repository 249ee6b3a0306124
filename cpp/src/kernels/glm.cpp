// Fused GLM likelihoods (Stan's *_glm_lpmf), for a data design matrix X (N x K) and S draws of
// the parameters at once:
//
//   normal_id_glm(y | X, alpha, beta, sigma)   y_n ~ Normal(eta_n, sigma)
//   bernoulli_logit_glm(y | X, alpha, beta)    y_n ~ Bernoulli(inv_logit(eta_n))
//   poisson_log_glm(y | X, alpha, beta)        y_n ~ Poisson(exp(eta_n))
//
// with eta_n = alpha + x_n . beta. One driver serves all three. It streams over blocks of rows of
// X: for a block it forms the linear predictors of a panel of draws with one GEMM
// (eta = X_blk B + alpha), turns them in place into the residuals r = d lp / d eta while summing
// the log density, and adds X_blk^T r to the gradient of beta while the block is still in cache;
// X is read from memory once per evaluation.
//
// Determinism: rows are cut into chunks by N, K and S alone (never by the thread count). Each
// chunk sums into its own slot, whichever thread runs it, and the slots are added in chunk order
// afterwards, so 1 thread and 2 threads give bit-identical results.
//
// Scratch is sized in reserve(); evaluate() does not allocate: the GEMMs are kept small enough for
// Eigen to put its packing buffers on the stack (bench/cpp/alloc_check verifies this).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "builtin.hpp"
#include "fastvi/broadcast.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

using ConstRowMap = Eigen::Map<const RowMatrix>;
using DrawMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;  // K x S block of Batch::value
using PanelMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
using ArrayMap = Eigen::Map<Eigen::ArrayXd>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXd>;

constexpr Index kMaxPanel = 32;       // draws per GEMM
constexpr Index kMaxTileK = 240;      // columns of X per GEMM
constexpr Index kMaxBlockRows = 256;  // rows of X per block
// Eigen packs kc x mc and kc x nc blocks of a GEMM's operands, on the stack while each is below
// EIGEN_STACK_ALLOCATION_LIMIT (128 KB = 16384 doubles), on the heap above. Every product here has
// kc, mc, nc bounded by (tile, block rows, panel), and both packed blocks together stay below:
constexpr Index kGemmBudget = 12288;  // doubles
// Rows per chunk: at least kMinChunkRows and 4 S (so the per-chunk partial sums stay small next
// to the chunk's rows of X), and enough that there are at most kMaxChunks chunks.
constexpr Index kMinChunkRows = 512;
constexpr Index kMaxChunks = 64;
// Multiply-adds per evaluation below which a kernel stays on one thread: waking a second
// (passively waiting) thread costs tens of microseconds, more than it saves on smaller problems.
// bench/cpp's threshold sweep measures it (bench/README.md); on the shared 2-core machine it was
// run on, 2 threads were 0.6-0.75x as fast as 1 up to 2e5 multiply-adds, so 1e6 was kept.
// FASTVI_GLM_PARALLEL_WORK overrides it (read once), for that measurement.
constexpr double kParallelWork = 1.0e6;
double parallel_work() {
  static const double value = [] {
    const char* env = std::getenv("FASTVI_GLM_PARALLEL_WORK");
    return env ? std::strtod(env, nullptr) : kParallelWork;
  }();
  return value;
}

Index round_up(Index x, Index m) { return (x + m - 1) / m * m; }

// A family turns one column of linear predictors eta (before adding `offset`) into residuals
// r = d lp / d eta in place, adds its log-density terms (without constants) to acc and sum(r) to
// rsum. tmp is scratch of the same length. constant(y) is the data-only part of the log density.
struct NormalId {
  static constexpr bool kHasSigma = true;
  static double constant(const Vector& y) { return -double(y.size()) * math::kHalfLog2Pi; }
  // r is the raw residual y - eta here; the driver divides by sigma^2 at the end. acc gets sum r^2.
  static void column(const double* y, double* eta, double* tmp, Index n, double offset, double& acc, double& rsum) {
    (void)tmp;
    ArrayMap e(eta, n);
    e = ConstArrayMap(y, n) - (e + offset);
    acc += e.square().sum();
    rsum += e.sum();
  }
};

// SIMD helpers for the logistic column (Eigen's packet math: AVX-512, AVX or SSE, whichever the
// build targets). Eigen 3.4's exp and log for double each hide a division (rational
// approximations), and a division is the slowest packet operation there is: the old column, with
// exp, log and two more divisions per element, was bound by the divider. These functions need
// one division between them, and work on M packets at once with every step applied to all M
// before the next: the polynomials are chains of dependent FMAs, and M independent chains keep
// the FMA units busy instead of waiting on each one's latency.
using Packet = Eigen::internal::packet_traits<double>::type;
constexpr Index kWidth = Eigen::internal::packet_traits<double>::size;
constexpr int kInterleave = 4;  // packets in flight

// exp(x) for x <= 0 without a division: x = n log 2 + r with |r| <= log(2) / 2 (Cody-Waite,
// Cephes' split of log 2), exp(r) by its Taylor polynomial of degree 13 (truncation below 5e-18),
// times 2^n (pldexp handles underflow to subnormals and 0).
template <int M>
inline void exp_packets(const Packet (&x)[M], Packet (&out)[M]) {
  using namespace Eigen::internal;
  static constexpr double kInvFactorial[14] = {1.0,
                                               1.0,
                                               1.0 / 2.0,
                                               1.0 / 6.0,
                                               1.0 / 24.0,
                                               1.0 / 120.0,
                                               1.0 / 720.0,
                                               1.0 / 5040.0,
                                               1.0 / 40320.0,
                                               1.0 / 362880.0,
                                               1.0 / 3628800.0,
                                               1.0 / 39916800.0,
                                               1.0 / 479001600.0,
                                               1.0 / 6227020800.0};
  Packet n[M], r[M];
  for (int j = 0; j < M; ++j) {
    const Packet xc = x[j];
    n[j] = pfloor(pmadd(xc, pset1<Packet>(1.4426950408889634074), pset1<Packet>(0.5)));
    r[j] = pmadd(n[j], pset1<Packet>(-0.693145751953125), xc);
    r[j] = pmadd(n[j], pset1<Packet>(-1.42860682030941723212e-6), r[j]);
    out[j] = pset1<Packet>(kInvFactorial[13]);
  }
  for (int k = 12; k >= 0; --k)
    for (int j = 0; j < M; ++j) out[j] = pmadd(out[j], r[j], pset1<Packet>(kInvFactorial[k]));
  for (int j = 0; j < M; ++j) out[j] = pldexp(out[j], n[j]);
}

// For t in [0, 1]: log1p(t) and 1 / (1 + t), with one division. With u = 1 + t (times 1/2 and
// plus log 2 when u > sqrt 2), log u = 2 atanh(s), s = f / (2 + f), f = u - 1, |s| <= 0.1716,
// by its series to s^19 (truncation below 3e-17 relative). s = f / (2 + f) and 1 / u share one division:
// q = 1 / (u (2 + f)). f is formed from t without rounding (t, or (t - 1) / 2), so log1p keeps
// its relative accuracy for tiny t. Both results are good to a few ulp.
template <int M>
inline void log1p_and_inverse(const Packet (&t)[M], Packet (&log1p)[M], Packet (&inv)[M]) {
  using namespace Eigen::internal;
  const Packet one = pset1<Packet>(1.0);
  Packet big[M], s[M], z[M];
  for (int j = 0; j < M; ++j) {
    const Packet u = padd(one, t[j]);
    big[j] = pcmp_lt(pset1<Packet>(1.4142135623730951), u);
    // For big u: (u / 2 - 1) / (2 + u / 2 - 1) = (t - 1) / (3 + t).
    const Packet num = pselect(big[j], psub(t[j], one), t[j]);
    const Packet den = padd(pselect(big[j], pset1<Packet>(3.0), pset1<Packet>(2.0)), t[j]);
    const Packet q = pdiv(one, pmul(u, den));
    inv[j] = pmul(q, den);
    s[j] = pmul(num, pmul(q, u));
    z[j] = pmul(s[j], s[j]);
    log1p[j] = pset1<Packet>(1.0 / 19.0);
  }
  for (int k = 8; k >= 0; --k)
    for (int j = 0; j < M; ++j) log1p[j] = pmadd(log1p[j], z[j], pset1<Packet>(1.0 / double(2 * k + 1)));
  for (int j = 0; j < M; ++j)
    log1p[j] = padd(pand(big[j], pset1<Packet>(0.69314718055994530942)), pmul(pset1<Packet>(2.0), pmul(s[j], log1p[j])));
}

struct BernoulliLogit {
  static constexpr bool kHasSigma = false;
  static double constant(const Vector&) { return 0.0; }
  // lp = y eta - log1p_exp(eta), log1p_exp(eta) = max(eta, 0) + log1p(t), t = exp(-|eta|);
  // r = y - inv_logit(eta), inv_logit(eta) = 1 / (1 + t) if eta >= 0, else t / (1 + t).
  // One pass over the column, kInterleave packets at a time; the last partial group is padded,
  // so every element goes through the same arithmetic.
  static void column(const double* y, double* eta, double* tmp, Index n, double offset, double& acc, double& rsum) {
    using namespace Eigen::internal;
    (void)tmp;
    constexpr int M = kInterleave;
    constexpr Index kGroup = M * kWidth;
    const Packet off = pset1<Packet>(offset), zero = pset1<Packet>(0.0);
    Packet acc_p = zero, rsum_p = zero;
    // M packets of y and eta (before the offset) to M packets of log-density terms and residuals.
    auto terms = [&](const double* yy, const double* ee, Packet (&lp)[M], Packet (&r)[M]) {
      Packet e[M], x[M], t[M], l[M], inv[M];
      for (int j = 0; j < M; ++j) {
        e[j] = padd(ploadu<Packet>(ee + j * kWidth), off);
        x[j] = pnegate(pabs(e[j]));
      }
      exp_packets<M>(x, t);
      log1p_and_inverse<M>(t, l, inv);
      for (int j = 0; j < M; ++j) {
        const Packet y_j = ploadu<Packet>(yy + j * kWidth);
        lp[j] = psub(psub(pmul(y_j, e[j]), pmax(e[j], zero)), l[j]);
        r[j] = psub(y_j, pselect(pcmp_le(zero, e[j]), inv[j], pmul(t[j], inv[j])));
      }
    };
    Index i = 0;
    for (; i + kGroup <= n; i += kGroup) {
      Packet lp[M], r[M];
      terms(y + i, eta + i, lp, r);
      for (int j = 0; j < M; ++j) {
        pstoreu(eta + i + j * kWidth, r[j]);
        acc_p = padd(acc_p, lp[j]);
        rsum_p = padd(rsum_p, r[j]);
      }
    }
    double a = predux(acc_p), rs = predux(rsum_p);
    if (i < n) {
      alignas(64) double yb[kGroup] = {}, eb[kGroup] = {}, lb[kGroup], rb[kGroup];
      for (Index j = 0; j < n - i; ++j) {
        yb[j] = y[i + j];
        eb[j] = eta[i + j];
      }
      Packet lp[M], r[M];
      terms(yb, eb, lp, r);
      for (int j = 0; j < M; ++j) {
        pstore(lb + j * kWidth, lp[j]);
        pstore(rb + j * kWidth, r[j]);
      }
      for (Index j = 0; j < n - i; ++j) {
        eta[i + j] = rb[j];
        a += lb[j];
        rs += rb[j];
      }
    }
    acc += a;
    rsum += rs;
  }
};

struct PoissonLog {
  static constexpr bool kHasSigma = false;
  static double constant(const Vector& y) {
    double c = 0.0;
    for (Index i = 0; i < y.size(); ++i) c -= math::log_gamma(y[i] + 1.0);
    return c;
  }
  // lp = y eta - exp(eta) (the -lgamma(y + 1) terms are a constant); r = y - exp(eta).
  static void column(const double* y, double* eta, double* tmp, Index n, double offset, double& acc, double& rsum) {
    ArrayMap e(eta, n), t(tmp, n);
    const ConstArrayMap yy(y, n);
    if (offset != 0.0) e += offset;
    t = e.exp();
    acc += (yy * e - t).sum();
    e = yy - t;
    rsum += e.sum();
  }
};

template <class F>
class Glm final : public Kernel {
 public:
  // ops: y, X, alpha, beta[, sigma], as registered.
  explicit Glm(std::vector<Operand> ops) {
    Operand& y = ops[0];
    Operand& x = ops[1];
    if (x.shape.size() != 2) throw std::invalid_argument("X must be 2-D (N, K), got shape " + shape_str(x.shape));
    n_ = x.shape[0];
    k_ = x.shape[1];
    if (n_ < 1 || k_ < 1)
      throw std::invalid_argument("X must have at least one row and one column, got shape " + shape_str(x.shape));
    if (y.shape.size() > 1) throw std::invalid_argument("y must be 1-D (N,), got shape " + shape_str(y.shape));
    if (y.size() != n_)
      throw std::invalid_argument("y has " + std::to_string(y.size()) + " elements but X has " + std::to_string(n_) +
                                  " rows");
    alpha_ = std::move(ops[2]);
    beta_ = std::move(ops[3]);
    if (alpha_.size() != 1) throw std::invalid_argument("alpha must be a scalar, got shape " + shape_str(alpha_.shape));
    if (beta_.shape.size() > 1)
      throw std::invalid_argument("beta must be 1-D (K,), got shape " + shape_str(beta_.shape));
    if (beta_.size() != k_)
      throw std::invalid_argument("beta has " + std::to_string(beta_.size()) + " elements but X has " +
                                  std::to_string(k_) + " columns");
    if constexpr (F::kHasSigma) {
      sigma_ = std::move(ops[4]);
      if (sigma_.size() != 1)
        throw std::invalid_argument("sigma must be a scalar, got shape " + shape_str(sigma_.shape));
    }
    y_ = std::move(y.data);
    x_ = std::move(x.data);  // row-major N x K, as numpy laid it out: mapped, never copied again
    // Data-only parts computed once: X beta (+ alpha) for a data beta, and the log-density constants.
    if (!beta_.is_param) {
      xb_ = ConstRowMap(x_.data(), n_, k_) * beta_.data;
      if (!alpha_.is_param) xb_.array() += alpha_.data[0];
    }
    lp_const_ = F::constant(y_);
  }

  void reserve(Index draws) override {
    draws_ = draws;
    panel_ = std::min(draws, kMaxPanel);
    tile_ = std::min(k_, kMaxTileK);
    if (beta_.is_param) {
      // Largest multiple of 8 rows whose two products (X_blk B and X_blk^T r) fit the budget.
      blk_ = kMaxBlockRows;
      while (blk_ > 8 && (tile_ * (blk_ + panel_) > kGemmBudget || blk_ * (tile_ + panel_) > kGemmBudget)) blk_ -= 8;
    } else {
      blk_ = kMaxBlockRows;
    }
    blk_ = std::min(blk_, round_up(n_, 8));  // a multiple of 8 keeps every scratch column 64-byte aligned
    chunk_rows_ = round_up(std::max({kMinChunkRows, 4 * draws, (n_ + kMaxChunks - 1) / kMaxChunks}), blk_);
    chunks_ = (n_ + chunk_rows_ - 1) / chunk_rows_;
    part_rows_ = (beta_.is_param ? k_ : 0) + 2;
    part_.setZero(part_rows_, chunks_ * draws);
    threads_cap_ = int(std::min<Index>(std::max({1, omp_get_num_procs(), omp_get_max_threads()}), chunks_));
    scratch_.setZero(blk_, (panel_ + 1) * threads_cap_);
  }

  void evaluate(const Batch& b) override {
    if (b.draws != draws_) throw std::logic_error("GLM kernel: reserve() was not called for this number of draws");
    const Index S = draws_;
    const int threads = std::max(1, std::min(b.threads, threads_cap_));  // more than the cores gains nothing
    // With beta as data there is no GEMM; the exp/log per element is counted as ~8 multiply-adds.
    const double work = double(n_) * double(S) * double(beta_.is_param ? k_ : 8);
    const bool parallel = threads > 1 && chunks_ > 1 && work >= parallel_work();
    // Both branches run the same chunks into the same slots. (Not one loop with an if() clause:
    // libgomp mallocs and frees a team for every one-thread region.) Chunks are handed out one
    // at a time: with another process on one of the cores, the thread that has a core to itself
    // takes more of them, where a static split would make the step wait for the slowed thread.
    // Which thread runs a chunk changes nothing in the result.
    if (parallel) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
      for (Index c = 0; c < chunks_; ++c) run_chunk(b, c, scratch_.data() + omp_get_thread_num() * blk_ * (panel_ + 1));
    } else {
      for (Index c = 0; c < chunks_; ++c) run_chunk(b, c, scratch_.data());
    }

    // Serial reduction in chunk order, then the per-draw terms.
    auto total = part_.leftCols(S);
    for (Index c = 1; c < chunks_; ++c) total += part_.middleCols(c * S, S);
    const Index acc_row = part_rows_ - 2, rsum_row = part_rows_ - 1;
    for (Index s = 0; s < S; ++s) {
      const double acc = total(acc_row, s), rsum = total(rsum_row, s);
      double scale = 1.0;  // d lp / d eta = scale * r
      if constexpr (F::kHasSigma) {
        const double sigma = sigma_.is_param ? b.value[s * b.ld + sigma_.row] : sigma_.data[0];
        scale = 1.0 / (sigma * sigma);
        b.lp[s] += -0.5 * acc * scale - double(n_) * std::log(sigma) + lp_const_;
        if (sigma_.is_param) b.grad[s * b.ld + sigma_.row] += (acc * scale - double(n_)) / sigma;
      } else {
        b.lp[s] += acc + lp_const_;
      }
      if (alpha_.is_param) b.grad[s * b.ld + alpha_.row] += scale * rsum;
      if (beta_.is_param) {
        double* g = b.grad + s * b.ld + beta_.row;
        for (Index k = 0; k < k_; ++k) g[k] += scale * total(k, s);
      }
    }
  }

 private:
  // Rows [c * chunk_rows_, ...) of chunk c into its own slot of part_.
  void run_chunk(const Batch& b, Index c, double* scratch) {
    const Index S = draws_;
    auto slot = part_.middleCols(c * S, S);
    slot.setZero();
    const ConstRowMap x(x_.data(), n_, k_);
    const Index begin = c * chunk_rows_, end = std::min(n_, begin + chunk_rows_);
    const Index acc_row = part_rows_ - 2, rsum_row = part_rows_ - 1;
    double* tmp = scratch + blk_ * panel_;
    for (Index r0 = begin; r0 < end; r0 += blk_) {
      const Index n = std::min(blk_, end - r0);
      for (Index s0 = 0; s0 < S; s0 += panel_) {
        const Index p = std::min(panel_, S - s0);
        PanelMap eta(scratch, n, p, Eigen::OuterStride<>(blk_));
        if (beta_.is_param) {
          for (Index k0 = 0; k0 < k_; k0 += tile_) {
            const Index kt = std::min(tile_, k_ - k0);
            const DrawMap beta(b.value + s0 * b.ld + beta_.row + k0, kt, p, Eigen::OuterStride<>(b.ld));
            if (k0 == 0)
              eta.noalias() = x.block(r0, k0, n, kt) * beta;
            else
              eta.noalias() += x.block(r0, k0, n, kt) * beta;
          }
        } else {
          for (Index j = 0; j < p; ++j) eta.col(j) = xb_.segment(r0, n);
        }
        for (Index j = 0; j < p; ++j) {
          const Index s = s0 + j;
          double offset = 0.0;  // what eta still lacks: alpha, unless already folded into xb_
          if (alpha_.is_param)
            offset = b.value[s * b.ld + alpha_.row];
          else if (beta_.is_param)
            offset = alpha_.data[0];
          F::column(y_.data() + r0, scratch + j * blk_, tmp, n, offset, slot(acc_row, s), slot(rsum_row, s));
        }
        if (beta_.is_param)
          for (Index k0 = 0; k0 < k_; k0 += tile_) {
            const Index kt = std::min(tile_, k_ - k0);
            slot.block(k0, s0, kt, p).noalias() += x.block(r0, k0, n, kt).transpose() * eta;
          }
      }
    }
  }

  Vector y_, x_, xb_;
  Index n_ = 0, k_ = 0;
  Operand alpha_, beta_, sigma_;
  double lp_const_ = 0.0;
  // Layout chosen in reserve().
  Index draws_ = -1, panel_ = 1, tile_ = 1, blk_ = 8, chunk_rows_ = 1, chunks_ = 1, part_rows_ = 2;
  int threads_cap_ = 1;
  Matrix part_;     // part_rows_ x (chunks_ * S): per chunk, grad beta (K rows, if a parameter), acc, sum r
  Matrix scratch_;  // blk_ x ((panel_ + 1) * threads_cap_): per thread, eta panel and tmp column
};

template <class F>
KernelFactory glm_factory() {
  return [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
    return std::make_unique<Glm<F>>(std::move(ops));
  };
}

InputInfo x_input() { return {"X", Support::Real, true, std::nullopt, "design matrix (N, K), data"}; }
InputInfo alpha_input() { return {"alpha", Support::Real, false, 0.0, "intercept (scalar)"}; }
InputInfo beta_input() { return {"beta", Support::Real, false, std::nullopt, "coefficients (K,)"}; }

}  // namespace

void register_glm(KernelRegistry& r) {
  r.add({"normal_id_glm",
         "Normal linear regression: y_n ~ Normal(alpha + X[n] . beta, sigma), fused over the rows of X",
         {{"y", Support::Real, true, std::nullopt, "outcome (N,), data"},
          x_input(), alpha_input(), beta_input(),
          {"sigma", Support::Positive, false, std::nullopt, "noise standard deviation (scalar)"}},
         false, glm_factory<NormalId>()});
  r.add({"bernoulli_logit_glm",
         "Logistic regression: y_n ~ Bernoulli(inv_logit(alpha + X[n] . beta)), fused over the rows of X",
         {{"y", Support::Binary, true, std::nullopt, "outcome (N,) in {0, 1}, data"},
          x_input(), alpha_input(), beta_input()},
         false, glm_factory<BernoulliLogit>()});
  r.add({"poisson_log_glm",
         "Poisson regression: y_n ~ Poisson(exp(alpha + X[n] . beta)), fused over the rows of X",
         {{"y", Support::Count, true, std::nullopt, "counts (N,), data"},
          x_input(), alpha_input(), beta_input()},
         false, glm_factory<PoissonLog>()});
}

}  // namespace fastvi::kernels
