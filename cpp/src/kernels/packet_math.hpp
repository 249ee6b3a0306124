// Vectorised exp and log1p for the logistic GLM column, in Eigen's packet math (AVX-512, AVX
// or SSE, whichever the build targets).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <cstring>

#include "fastvi/types.hpp"

namespace fastvi::kernels::packet_math {

// SIMD helpers for the logistic column (Eigen's packet math: AVX-512, AVX or SSE, whichever the
// build targets). Eigen 3.4's exp and log for double each hide a division (rational
// approximations), and a division is the slowest packet operation there is: the old column, with
// exp, log and two more divisions per element, was bound by the divider. These functions need
// one division between them, and work on M packets at once with every step applied to all M
// before the next: the polynomials are chains of dependent FMAs, and M independent chains keep
// the FMA units busy instead of waiting on each one's latency.
using simd::kWidth;
using simd::Packet;

// Polynomial sum_k c[k] x^k of degree N - 1 by Estrin's scheme: pairs c[2j] + c[2j+1] x, then
// pairs of those with x^2, x^4, ... The dependency chain is about log2(N) multiply-adds deep,
// against N - 1 for Horner's rule, which matters here: the column's packets are few enough that
// the polynomials' latency, not the FMA throughput, would set the pace.
template <int N>
inline Packet estrin(const Packet& x, const double (&c)[N]) {
  using namespace Eigen::internal;
  constexpr int kPairs = (N + 1) / 2;
  Packet q[kPairs];
  for (int j = 0; j < kPairs; ++j)
    q[j] = 2 * j + 1 < N ? pmadd(pset1<Packet>(c[2 * j + 1]), x, pset1<Packet>(c[2 * j])) : pset1<Packet>(c[2 * j]);
  Packet power = pmul(x, x);
  for (int n = kPairs; n > 1; n = (n + 1) / 2) {
    for (int j = 0; j < n / 2; ++j) q[j] = pmadd(q[2 * j + 1], power, q[2 * j]);
    if (n % 2) q[n / 2] = q[n - 1];
    power = pmul(power, power);
  }
  return q[0];
}

// 2^m for integer-valued m in [-1022, 1023], built in the exponent field: m + 1023 + 1.5 2^52
// holds m + 1023 in its low mantissa bits (exactly, as an integer), which a shift by 52 moves
// into the exponent field, pushing the rest out. Two operations, and no conversion from double
// to a 64-bit integer (which AVX2 lacks: Eigen's generic pldexp emulates it).
inline Packet power_of_two(const Packet& m) {
  using namespace Eigen::internal;
  const Packet biased = padd(m, pset1<Packet>(1023.0 + 6755399441055744.0));
#if defined(EIGEN_VECTORIZE_AVX512)
  return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(biased), 52));
#elif defined(EIGEN_VECTORIZE_AVX2)
  return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(biased), 52));
#elif defined(EIGEN_VECTORIZE_AVX)  // AVX without AVX2: no 256-bit integer shift
  const __m256i bits = _mm256_castpd_si256(biased);
  const __m128i lo = _mm_slli_epi64(_mm256_castsi256_si128(bits), 52);
  const __m128i hi = _mm_slli_epi64(_mm256_extractf128_si256(bits, 1), 52);
  return _mm256_castsi256_pd(_mm256_insertf128_si256(_mm256_castsi128_si256(lo), hi, 1));
#elif defined(EIGEN_VECTORIZE_SSE2)
  return _mm_castsi128_pd(_mm_slli_epi64(_mm_castpd_si128(biased), 52));
#else
  alignas(64) double lanes[kWidth];
  pstore(lanes, biased);
  for (Index j = 0; j < kWidth; ++j) {
    std::uint64_t bits;
    std::memcpy(&bits, &lanes[j], sizeof bits);
    bits <<= 52;
    std::memcpy(&lanes[j], &bits, sizeof bits);
  }
  return pload<Packet>(lanes);
#endif
}

// p 2^n for integer-valued n and p in [0.5, 2] (exp's polynomial), with gradual underflow to
// subnormals and 0 and overflow to inf: one vscalefpd with AVX-512; otherwise two factors 2^n1
// 2^n2, n1 = floor(n / 2), each in the normal range once n is clamped to [-2044, 2046] (where
// p 2^n is already 0 or inf), the first product exact and the second rounded once, as a single
// scaling would be.
inline Packet scale_by_power_of_two(const Packet& p, const Packet& n) {
#if defined(EIGEN_VECTORIZE_AVX512)
  return _mm512_scalef_pd(p, n);
#else
  using namespace Eigen::internal;
  const Packet m = pmin(pmax(n, pset1<Packet>(-2044.0)), pset1<Packet>(2046.0));
  const Packet m1 = pfloor(pmul(m, pset1<Packet>(0.5)));
  return pmul(pmul(p, power_of_two(m1)), power_of_two(psub(m, m1)));
#endif
}

// exp(x) without a division: x = n log 2 + r with |r| <= log(2) / 2 (Cody-Waite, Cephes' split
// of log 2), exp(r) by its Taylor polynomial of degree 13 (truncation below 5e-18), times 2^n
// (which underflows gradually to subnormals and 0 below x = -745, and overflows to inf above
// x = 709.78). The logistic column calls it for x <= 0, the Poisson column for any x.
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
  for (int j = 0; j < M; ++j) {
    const Packet xc = x[j];
    const Packet n = pfloor(pmadd(xc, pset1<Packet>(1.4426950408889634074), pset1<Packet>(0.5)));
    Packet r = pmadd(n, pset1<Packet>(-0.693145751953125), xc);
    r = pmadd(n, pset1<Packet>(-1.42860682030941723212e-6), r);
    out[j] = scale_by_power_of_two(estrin(r, kInvFactorial), n);
  }
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
  }
  static constexpr double kOdd[10] = {1.0,        1.0 / 3.0,  1.0 / 5.0,  1.0 / 7.0,  1.0 / 9.0,
                                      1.0 / 11.0, 1.0 / 13.0, 1.0 / 15.0, 1.0 / 17.0, 1.0 / 19.0};
  for (int j = 0; j < M; ++j) log1p[j] = estrin(z[j], kOdd);
  for (int j = 0; j < M; ++j)
    log1p[j] =
        padd(pand(big[j], pset1<Packet>(0.69314718055994530942)), pmul(pset1<Packet>(2.0), pmul(s[j], log1p[j])));
}

}  // namespace fastvi::kernels::packet_math
