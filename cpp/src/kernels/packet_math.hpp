// Vectorised exp and log1p for the logistic GLM column, in Eigen's packet math (AVX-512, AVX
// or SSE, whichever the build targets).
#pragma once

#include <Eigen/Core>

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

// p 2^n for integer-valued n, with gradual underflow: one vscalefpd with AVX-512; Eigen's
// generic pldexp (a dozen integer operations) otherwise.
inline Packet scale_by_power_of_two(const Packet& p, const Packet& n) {
#if defined(EIGEN_VECTORIZE_AVX512)
  return _mm512_scalef_pd(p, n);
#else
  return Eigen::internal::pldexp(p, n);
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
