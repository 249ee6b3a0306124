// The normal, logistic and Poisson families of the fused GLM driver (glm.cpp): each one's column
// pass, which turns a column of linear predictors into residuals and log-density terms. The
// negative binomial, with a parameter of its own, is in glm_neg_binomial.hpp. glm.cpp (and
// bench_elbo_step, for the column's in-cache floor) includes this header.
#pragma once

#include <Eigen/Core>
#include <cmath>

#include "fastvi/math.hpp"
#include "fastvi/types.hpp"
#include "packet_math.hpp"

namespace fastvi::kernels::glm_families {

using ArrayMap = Eigen::Map<Eigen::ArrayXd>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXd>;
using packet_math::exp_packets;
using packet_math::log1p_and_inverse;  // (the negative binomial's column)
using simd::kWidth;
using simd::Packet;

// A family turns one column of linear predictors eta (before adding `offset`) into residuals
// r = d lp / d eta in place, adds its log-density terms (without constants) to acc and sum(r) to
// rsum. tmp is scratch of the same length. constant(y) is the data-only part of the log density.
struct NormalId {
  static constexpr bool kHasSigma = true;
  static constexpr bool kHasPhi = false;
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

constexpr int kInterleave = 4;  // packets in flight

// The packet column passes' common loop: kInterleave packets of y and eta (before the offset) at a
// time through terms(y, eta, r, s, f), which gives the residuals r (stored over eta, and summed),
// T other terms per element (summed: the log density, and the negative binomial's d/d phi) and L
// values f in [0, 1] per element whose log1p are summed (L = 0 or 1). The last partial group is
// padded, so that every element goes through the same arithmetic.
// sums[0] += sum of r, sums[1 + k] += sum of term k, sums[1 + T] += sum of log1p(f).
//
// A sum of log1p(f_i) is log1p(q), q = prod(1 + f_i) - 1, and q costs an add and a multiply-add
// per element, q' = q + f + q f, where log1p costs a polynomial of 10 terms and a division (the
// logistic column's log1p_exp). Each lane of each of the kInterleave packets keeps its own q; at
// most every kFlushGroups groups, and at the end of the column, they are combined (by the same
// rule: 1 + q <= 2^(4 * 128) = 2^512, no overflow) and their log1p taken once
// (log1p_nonnegative). q is carried rather than 1 + q so that tiny f keep their digits: each
// update rounds q by a relative 1.1e-16, so log1p(q) is as accurate, relative to the sum, as
// adding the log1p terms one by one (a product of the 1 + f_i would lose every f_i below 1e-16,
// an absolute 1e-16 per element whatever the terms' size).
constexpr Index kFlushGroups = 128;

template <int T, int L, class Terms>
inline void packet_column(const double* y, double* eta, Index n, Terms&& terms, double (&sums)[T + 1 + L]) {
  using namespace Eigen::internal;
  static_assert(L == 0 || L == 1, "at most one sum of log1p terms");
  constexpr int M = kInterleave;
  static_assert(M == 4, "flush combines 4 packets");
  constexpr Index kGroup = M * kWidth;
  constexpr int kL = L > 0 ? L : 1;  // (no arrays of size 0)
  Packet total[T + 1 + L], q[kL][M];
  for (int k = 0; k < T + 1 + L; ++k) total[k] = pset1<Packet>(0.0);
  for (int k = 0; k < kL; ++k)
    for (int j = 0; j < M; ++j) q[k][j] = pset1<Packet>(0.0);
  // (1 + a)(1 + b) - 1
  auto combine = [](const Packet& a, const Packet& b) { return pmadd(a, b, padd(a, b)); };
  // Adds log1p of the combined q's to their totals and starts them afresh.
  auto flush = [&] {
    for (int k = 0; k < L; ++k) {
      const Packet all = combine(combine(q[k][0], q[k][1]), combine(q[k][2], q[k][3]));
      total[1 + T + k] = padd(total[1 + T + k], packet_math::log1p_nonnegative(all));
      for (int j = 0; j < M; ++j) q[k][j] = pset1<Packet>(0.0);
    }
  };
  Index i = 0, groups = 0;
  for (; i + kGroup <= n; i += kGroup) {
    Packet r[M], s[T][M], f[kL][M];
    terms(y + i, eta + i, r, s, f);
    for (int j = 0; j < M; ++j) {
      pstoreu(eta + i + j * kWidth, r[j]);
      total[0] = padd(total[0], r[j]);
      for (int k = 0; k < T; ++k) total[1 + k] = padd(total[1 + k], s[k][j]);
      for (int k = 0; k < L; ++k) q[k][j] = combine(q[k][j], f[k][j]);
    }
    if constexpr (L > 0) {
      if (++groups == kFlushGroups) {
        flush();
        groups = 0;
      }
    }
  }
  if (i < n) {
    alignas(64) double yb[kGroup] = {}, eb[kGroup] = {}, out[T + 1 + kL][kGroup];
    for (Index j = 0; j < n - i; ++j) {
      yb[j] = y[i + j];
      eb[j] = eta[i + j];
    }
    Packet r[M], s[T][M], f[kL][M];
    terms(yb, eb, r, s, f);
    for (int j = 0; j < M; ++j) {
      pstore(out[0] + j * kWidth, r[j]);
      for (int k = 0; k < T; ++k) pstore(out[1 + k] + j * kWidth, s[k][j]);
      for (int k = 0; k < L; ++k) pstore(out[1 + T + k] + j * kWidth, f[k][j]);
    }
    for (Index j = 0; j < n - i; ++j) eta[i + j] = out[0][j];
    for (int k = 0; k <= T; ++k) {
      double part = 0.0;
      for (Index j = 0; j < n - i; ++j) part += out[k][j];
      sums[k] += part;
    }
    for (int k = 0; k < L; ++k) {  // the padding's f are 0: log1p(0) adds nothing
      for (Index j = n - i; j < kGroup; ++j) out[1 + T + k][j] = 0.0;
      for (int j = 0; j < M; ++j) q[k][j] = combine(q[k][j], pload<Packet>(out[1 + T + k] + j * kWidth));
    }
  }
  if constexpr (L > 0) flush();
  for (int k = 0; k < T + 1 + L; ++k) sums[k] += predux(total[k]);
}

struct BernoulliLogit {
  static constexpr bool kHasSigma = false;
  static constexpr bool kHasPhi = false;
  static double constant(const Vector&) { return 0.0; }
  // lp = y eta - log1p_exp(eta), log1p_exp(eta) = max(eta, 0) + log1p(t), t = exp(-|eta|);
  // r = y - inv_logit(eta), inv_logit(eta) = 1 / (1 + t) if eta >= 0, else t / (1 + t).
  // The log1p(t) are summed as one log1p of prod(1 + t) - 1 (packet_column), so an element costs
  // an exp and a division. -|eta| is clamped to -708 (exp_packets' normal range):
  // t = exp(-708) = 3e-308 instead of a smaller number changes lp and r by less than 1e-307.
  static void column(const double* y, double* eta, double* tmp, Index n, double offset, double& acc, double& rsum) {
    using namespace Eigen::internal;
    (void)tmp;
    constexpr int M = kInterleave;
    const Packet off = pset1<Packet>(offset), zero = pset1<Packet>(0.0), one = pset1<Packet>(1.0),
                 lowest = pset1<Packet>(-708.0);
    double sums[3] = {0.0, 0.0, 0.0};  // sum r, sum (y eta - max(eta, 0)), sum log1p(t)
    packet_column<1, 1>(
        y, eta, n,
        [&](const double* yy, const double* ee, Packet(&r)[M], Packet(&s)[1][M], Packet(&f)[1][M]) {
          Packet e[M], x[M], t[M];
          for (int j = 0; j < M; ++j) {
            e[j] = padd(ploadu<Packet>(ee + j * kWidth), off);
            x[j] = pmax(pnegate(pabs(e[j])), lowest);
          }
          exp_packets<M, true>(x, t);
          for (int j = 0; j < M; ++j) {
            const Packet y_j = ploadu<Packet>(yy + j * kWidth);
            f[0][j] = t[j];
            const Packet inv = pdiv(one, padd(one, t[j]));
            s[0][j] = psub(pmul(y_j, e[j]), pmax(e[j], zero));
            r[j] = psub(y_j, pselect(pcmp_le(zero, e[j]), inv, pmul(t[j], inv)));
          }
        },
        sums);
    rsum += sums[0];
    acc += sums[1] - sums[2];
  }
};

struct PoissonLog {
  static constexpr bool kHasSigma = false;
  static constexpr bool kHasPhi = false;
  static double constant(const Vector& y) {
    double c = 0.0;
    for (Index i = 0; i < y.size(); ++i) c -= math::log_gamma(y[i] + 1.0);
    return c;
  }
  // lp = y eta - exp(eta) (the -lgamma(y + 1) terms are a constant); r = y - exp(eta).
  // exp by packet_math's exp_packets (Eigen's exp for double hides a division).
  static void column(const double* y, double* eta, double* tmp, Index n, double offset, double& acc, double& rsum) {
    using namespace Eigen::internal;
    (void)tmp;
    constexpr int M = kInterleave;
    const Packet off = pset1<Packet>(offset);
    double sums[2] = {0.0, 0.0};  // sum r, sum lp
    packet_column<1, 0>(
        y, eta, n,
        [&](const double* yy, const double* ee, Packet(&r)[M], Packet(&s)[1][M], Packet(&)[1][M]) {
          Packet e[M], t[M];
          for (int j = 0; j < M; ++j) e[j] = padd(ploadu<Packet>(ee + j * kWidth), off);
          exp_packets<M>(e, t);
          for (int j = 0; j < M; ++j) {
            const Packet y_j = ploadu<Packet>(yy + j * kWidth);
            s[0][j] = psub(pmul(y_j, e[j]), t[j]);
            r[j] = psub(y_j, t[j]);
          }
        },
        sums);
    rsum += sums[0];
    acc += sums[1];
  }
};

}  // namespace fastvi::kernels::glm_families
