// The single-pass row kernel of the fused GLM likelihoods, for a few draws.
//
// With S = 1 draw, the two products of a GLM step, eta = X beta and g = X^T r, are GEMVs: a
// GEMV does one multiply-add per element of X it reads, so the step is bound by reading X, and
// Eigen's two GEMVs read it twice (the second time from L2). This kernel reads each row of X
// from memory once: it takes a pass of rows at a time, forms their linear predictors, turns
// them into residuals, and adds r_n x_n to the gradient while those rows are still in L1.
//
//   dot products   8 rows (or kWidth, if more) at a time: one packet accumulator per row,
//                  summed over the row's packets, then transposed and added (PacketBlock), so
//                  kWidth sums land in one packet without a horizontal reduction per row;
//   residuals      F::column on the pass's predictors (vectorised exp/log1p for the logistic);
//   axpy           g += r_n x_n, kTileK packets of g in registers at a time.
//
// K need not be a multiple of the packet width: each row's last packet is read whole, running
// kWidth - K % kWidth elements into the next row (or into the zero padding after the last row,
// which the caller provides). In the dot products those lanes meet beta's zero padding (X is
// finite, so they add exact zeros); in the axpy they accumulate into g's padding lanes, which
// the caller discards.
//
// With S > 1 draws the rows stay in L1 while each draw makes its pass over them, so X is still
// read from memory once per evaluation (the GEMM path in glm.cpp takes over for larger S).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#if __has_include(<unistd.h>)
#include <unistd.h>  // sysconf, for the L1 size
#endif

#include "fastvi/types.hpp"

#if defined(__GNUC__) && !defined(__clang__)
#define FASTVI_UNROLL _Pragma("GCC unroll 16")
#elif defined(__clang__)
#define FASTVI_UNROLL _Pragma("unroll")
#else
#define FASTVI_UNROLL
#endif

namespace fastvi::kernels::glm_rows {

using simd::kWidth;
using simd::Packet;
// Draws up to which glm.cpp uses this kernel rather than its GEMM path, for K columns. The
// crossover, measured with bench/cpp's crossover sweep (bernoulli_logit_glm, 1 thread,
// N = 10^4 and 10^5; bench/README.md), moves with K: the row kernel won at S <= 2 for every K
// (1.2-2.9x), up to S = 4 at K = 25 (1.05x) and up to S = 8 at K >= 50 (1.04-1.6x); at K = 10
// the GEMM path was 1.2-1.4x faster from S = 4. So K / 6, at least 2 and at most 8.
constexpr Index kMaxDraws = 8;
inline Index max_draws(Index k) { return std::clamp<Index>(k / 6, 2, kMaxDraws); }

// The L1 data cache's size in bytes, as the OS reports it (glibc reads it from cpuid), or 32 KiB
// (the smallest of current x86 cores) where it does not say.
inline Index l1_data_bytes() {
  static const Index bytes = [] {
#if defined(_SC_LEVEL1_DCACHE_SIZE)
    const long reported = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (reported >= 16384 && reported <= (1L << 22)) return Index(reported);
#endif
    return Index(32768);
  }();
  return bytes;
}

// Rows per pass: 64 when 64 rows of K doubles take at most 2/3 of L1d, else 32. The pass's
// rows stay in L1 for both products of every draw while the next pass's rows stream in beside
// them (axpy_rows prefetches them), so both must fit. Measured at K = 50 (25.6 KB for 64 rows):
// with a 48 KiB L1d (Zen 5, Sapphire Rapids), 64 rows against 32: N = 10^4, S = 1 the same;
// S = 8 and N = 10^5, S = 1 5-10 % faster (fewer calls into the column, longer prefetch
// distance). With a 32 KiB L1d (Zen 3), 32 rows against 64: N = 10^4, S = 1 1.15x faster (the
// prefetched pass evicted the one being computed on).
constexpr Index kMaxRows = 64;
inline Index pass_rows(Index k) { return 64 * k * Index(sizeof(double)) * 3 <= 2 * l1_data_bytes() ? 64 : 32; }
constexpr int kTileK = 8;  // packets of the gradient kept in registers during the axpy
static_assert(32 % kWidth == 0, "a pass is a whole number of packet groups");
static_assert(kTileK == 8, "axpy_rows dispatches tiles of 1 to 8 packets");

// Packets per row of K columns (the last one padded).
inline Index packets(Index k) { return (k + kWidth - 1) / kWidth; }

// X is double or float (a float32 design matrix is read as it is: half the bytes to read, and each
// product still exact in double). With one draw its packets are widened in registers as the two
// products read them; with several, glm.cpp widens each pass once (widen_rows) and every draw
// reads the doubles. T is X's element type below.

// kWidth elements of X from p as a packet of doubles.
inline Packet load_x(const double* p) { return Eigen::internal::ploadu<Packet>(p); }
inline Packet load_x(const float* p) {
#if defined(EIGEN_VECTORIZE_AVX512)
  return _mm512_cvtps_pd(_mm256_loadu_ps(p));
#elif defined(EIGEN_VECTORIZE_AVX)
  return _mm256_cvtps_pd(_mm_loadu_ps(p));
#elif defined(EIGEN_VECTORIZE_SSE2)
  return _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  alignas(64) double wide[kWidth];
  for (Index j = 0; j < kWidth; ++j) wide[j] = double(p[j]);
  return Eigen::internal::pload<Packet>(wide);
#endif
}

// A float32 pass's n rows of k elements (row stride k) widened once into doubles at `wide`, row
// stride ld = packets(k) * kWidth, for every product and draw that reads them: each row starts a
// cache line there (when wide is 64-byte aligned, as the GLM's scratch is), so no load of the
// products splits across two lines, as loads from rows of K = 50 doubles do. On a 64-row pass in
// L1 (K = 50, AVX-512) the axpy took 18 us per 10^4 rows on padded rows against 30 on rows at
// stride K, the dot products 30-42 against 32-48. Each row's last packet is converted whole (see
// above: its lanes past k hold the next row's first elements, finite). The cache lines of the
// `next_count` floats at `next` (the next pass) are asked for along the way, one per 16 floats,
// into L2 only: the draws' passes that follow fill L1 with the widened rows (measured at N = 10^5,
// S = 2: 1.2-1.4x faster than into L1; noisy).
inline void widen_rows(const float* x, Index k, Index n, double* wide, const float* next, Index next_count) {
  using namespace Eigen::internal;
  const Index kp = packets(k), ld = kp * kWidth;
  Index ahead = 0;
  for (Index i = 0; i < n; ++i) {
    for (; ahead < next_count && ahead < (i + 1) * k; ahead += 16) __builtin_prefetch(next + ahead, 0, 1);
    const float* xi = x + i * k;
    double* wi = wide + i * ld;
    for (Index p = 0; p < kp; ++p) pstoreu(wi + p * kWidth, load_x(xi + p * kWidth));
  }
  for (; ahead < next_count; ahead += 16) __builtin_prefetch(next + ahead, 0, 1);
}

// Asks for the cache lines of one row of k elements.
template <class T>
inline void prefetch_row(const T* row, Index k) {
  const char* p = reinterpret_cast<const char*>(row);
  for (Index off = 0; off < k * Index(sizeof(T)); off += 64) __builtin_prefetch(p + off, 0, 3);
}

// eta[0, B kWidth) = x_i . beta for the B kWidth rows starting at x (row stride ld): one packet
// accumulator per row, summed over the row's kp packets, then each block of kWidth transposed
// and added, so that its kWidth sums land in one packet without a horizontal reduction per row.
template <int B, class T>
inline void dot_group(const T* x, Index ld, Index kp, const double* beta, double* eta) {
  using namespace Eigen::internal;
  PacketBlock<Packet, int(kWidth)> acc[B];
  for (int q = 0; q < B; ++q) {
    FASTVI_UNROLL
    for (Index j = 0; j < kWidth; ++j) acc[q].packet[j] = pset1<Packet>(0.0);
  }
  for (Index p = 0; p < kp; ++p) {
    const Packet b = ploadu<Packet>(beta + p * kWidth);
    FASTVI_UNROLL
    for (int q = 0; q < B; ++q) {
      FASTVI_UNROLL
      for (Index j = 0; j < kWidth; ++j)
        acc[q].packet[j] = pmadd(load_x(x + (q * kWidth + j) * ld + p * kWidth), b, acc[q].packet[j]);
    }
  }
  for (int q = 0; q < B; ++q) {
    ptranspose(acc[q]);
    Packet sum = acc[q].packet[0];
    for (Index j = 1; j < kWidth; ++j) sum = padd(sum, acc[q].packet[j]);
    pstoreu(eta + q * kWidth, sum);
  }
}

// eta[0, n) = x_i . beta for the n rows of k elements starting at x (row stride ld: k, or the
// padded stride of a widened pass). beta holds packets(k) packets, zero past k.
// Groups of at least 8 rows (kGroupBlocks blocks of kWidth): 8 accumulators, 8 independent
// chains of multiply-adds, cover the FMA's latency (4 cycles, 2 per cycle). With one block of 4
// (AVX2) the dot products ran at about 1 multiply-add per cycle: 0.33 against 0.25 us per
// 64-row pass in L1 (K = 50, Zen 3). Each row's sum is formed the same way in either.
constexpr int kGroupBlocks = kWidth >= 8 ? 1 : int(8 / kWidth);
template <class T>
inline void dot_rows(const T* x, Index k, Index ld, Index n, const double* beta, double* eta) {
  const Index kp = packets(k);
  Index i = 0;
  for (; i + kGroupBlocks * kWidth <= n; i += kGroupBlocks * kWidth)
    dot_group<kGroupBlocks>(x + i * ld, ld, kp, beta, eta + i);
  for (; i + kWidth <= n; i += kWidth) dot_group<1>(x + i * ld, ld, kp, beta, eta + i);
  for (; i < n; ++i) {  // the rows of a last, partial block
    const T* xi = x + i * ld;
    Packet acc = Eigen::internal::pset1<Packet>(0.0);
    for (Index p = 0; p < kp; ++p)
      acc = Eigen::internal::pmadd(load_x(xi + p * kWidth), Eigen::internal::ploadu<Packet>(beta + p * kWidth), acc);
    eta[i] = Eigen::internal::predux(acc);
  }
}

// g[0, T) += sum_i r[i] x_i[0, T) (T packets) over the n rows starting at x (row stride ld): T
// accumulators in registers for the whole pass.
// Each row's turn i < next_rows also asks for the cache lines of row i of the next pass
// (next + i * k): spread over the pass, they arrive while this one computes.
template <int T, class X>
inline void axpy_tile(const X* x, Index k, Index ld, Index n, const double* r, double* g, const X* next,
                      Index next_rows) {
  using namespace Eigen::internal;
  // The loops over p are unrolled by hand (the pragma) so that acc stays in registers: left to
  // itself, GCC 12 kept it on the stack, a store and a reload around every multiply-add.
  Packet acc[T];
  FASTVI_UNROLL
  for (int p = 0; p < T; ++p) acc[p] = ploadu<Packet>(g + p * kWidth);
  for (Index i = 0; i < n; ++i) {
    if (i < next_rows) prefetch_row(next + i * k, k);
    const Packet ri = pset1<Packet>(r[i]);
    const X* xi = x + i * ld;
    FASTVI_UNROLL
    for (int p = 0; p < T; ++p) acc[p] = pmadd(ri, load_x(xi + p * kWidth), acc[p]);
  }
  FASTVI_UNROLL
  for (int p = 0; p < T; ++p) pstoreu(g + p * kWidth, acc[p]);
}

// axpy_tile<size> for a size from 1 to T known only at run time.
template <int T, class X>
inline void axpy_tile_of_size(Index size, const X* x, Index k, Index ld, Index n, const double* r, double* g,
                              const X* next, Index next_rows) {
  if constexpr (T > 1) {
    if (size < T) return axpy_tile_of_size<T - 1, X>(size, x, k, ld, n, r, g, next, next_rows);
  }
  axpy_tile<T, X>(x, k, ld, n, r, g, next, next_rows);
}

// g += sum_i r[i] x_i over the n rows of k elements starting at x (row stride ld); g holds packets(k) packets,
// whose lanes past k collect garbage (see above). As few tiles of at most kTileK packets as
// cover the row, of sizes as equal as can be: each tile's accumulators are independent chains of
// multiply-adds, so a short last tile (8 + 1 for 9 packets, 8 + 5 for K = 50 with AVX2) waited
// on their latency. Every lane of g still adds the rows in order, so the tiling changes no bit.
// The next_rows rows at `next` (those of the next pass, row stride k) are prefetched during the
// first tile.
template <class X>
inline void axpy_rows(const X* x, Index k, Index ld, Index n, const double* r, double* g, const X* next = nullptr,
                      Index next_rows = 0) {
  const Index kp = packets(k);
  const Index tiles = (kp + kTileK - 1) / kTileK;
  for (Index t = 0, p0 = 0; t < tiles; ++t, next_rows = 0) {
    const Index size = (kp - p0 + (tiles - t) - 1) / (tiles - t);  // the rest, shared evenly
    const X* xt = x + p0 * kWidth;
    double* gt = g + p0 * kWidth;
    p0 += size;
    axpy_tile_of_size<kTileK, X>(size, xt, k, ld, n, r, gt, next, next_rows);
  }
}

}  // namespace fastvi::kernels::glm_rows
