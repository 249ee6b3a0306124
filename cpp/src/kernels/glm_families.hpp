// The normal, logistic and Poisson families of the fused GLM driver (glm.cpp): each one's column
// pass, which turns a column of linear predictors into residuals and log-density terms. The
// negative binomial, with a parameter of its own, is in glm_neg_binomial.hpp. glm.cpp (and
// bench_elbo_step, for the logistic column's in-cache floor) includes this header.
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
using packet_math::log1p_and_inverse;
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
// time through terms(y, eta, r, s), which gives the residuals r (stored over eta, and summed) and
// T other terms per element (summed: the log density, and the negative binomial's d/d phi). The
// last partial group is padded, so that every element goes through the same arithmetic.
// sums[0] += sum of r, sums[1 + k] += sum of term k.
template <int T, class Terms>
inline void packet_column(const double* y, double* eta, Index n, Terms&& terms, double (&sums)[T + 1]) {
  using namespace Eigen::internal;
  constexpr int M = kInterleave;
  constexpr Index kGroup = M * kWidth;
  Packet total[T + 1];
  for (int k = 0; k <= T; ++k) total[k] = pset1<Packet>(0.0);
  Index i = 0;
  for (; i + kGroup <= n; i += kGroup) {
    Packet r[M], s[T][M];
    terms(y + i, eta + i, r, s);
    for (int j = 0; j < M; ++j) {
      pstoreu(eta + i + j * kWidth, r[j]);
      total[0] = padd(total[0], r[j]);
      for (int k = 0; k < T; ++k) total[1 + k] = padd(total[1 + k], s[k][j]);
    }
  }
  double part[T + 1];
  for (int k = 0; k <= T; ++k) part[k] = predux(total[k]);
  if (i < n) {
    alignas(64) double yb[kGroup] = {}, eb[kGroup] = {}, out[T + 1][kGroup];
    for (Index j = 0; j < n - i; ++j) {
      yb[j] = y[i + j];
      eb[j] = eta[i + j];
    }
    Packet r[M], s[T][M];
    terms(yb, eb, r, s);
    for (int j = 0; j < M; ++j) {
      pstore(out[0] + j * kWidth, r[j]);
      for (int k = 0; k < T; ++k) pstore(out[1 + k] + j * kWidth, s[k][j]);
    }
    for (Index j = 0; j < n - i; ++j) {
      eta[i + j] = out[0][j];
      for (int k = 0; k <= T; ++k) part[k] += out[k][j];
    }
  }
  for (int k = 0; k <= T; ++k) sums[k] += part[k];
}

struct BernoulliLogit {
  static constexpr bool kHasSigma = false;
  static constexpr bool kHasPhi = false;
  static double constant(const Vector&) { return 0.0; }
  // lp = y eta - log1p_exp(eta), log1p_exp(eta) = max(eta, 0) + log1p(t), t = exp(-|eta|);
  // r = y - inv_logit(eta), inv_logit(eta) = 1 / (1 + t) if eta >= 0, else t / (1 + t).
  // One pass over the column, kInterleave packets at a time; the last partial group is padded,
  // so every element goes through the same arithmetic.
  static void column(const double* y, double* eta, double* tmp, Index n, double offset, double& acc, double& rsum) {
    using namespace Eigen::internal;
    (void)tmp;
    constexpr int M = kInterleave;
    const Packet off = pset1<Packet>(offset), zero = pset1<Packet>(0.0);
    double sums[2] = {0.0, 0.0};  // sum r, sum lp
    packet_column<1>(
        y, eta, n,
        [&](const double* yy, const double* ee, Packet(&r)[M], Packet(&s)[1][M]) {
          Packet e[M], x[M], t[M], l[M], inv[M];
          for (int j = 0; j < M; ++j) {
            e[j] = padd(ploadu<Packet>(ee + j * kWidth), off);
            x[j] = pnegate(pabs(e[j]));
          }
          exp_packets<M>(x, t);
          log1p_and_inverse<M>(t, l, inv);
          for (int j = 0; j < M; ++j) {
            const Packet y_j = ploadu<Packet>(yy + j * kWidth);
            s[0][j] = psub(psub(pmul(y_j, e[j]), pmax(e[j], zero)), l[j]);
            r[j] = psub(y_j, pselect(pcmp_le(zero, e[j]), inv[j], pmul(t[j], inv[j])));
          }
        },
        sums);
    rsum += sums[0];
    acc += sums[1];
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
    packet_column<1>(
        y, eta, n,
        [&](const double* yy, const double* ee, Packet(&r)[M], Packet(&s)[1][M]) {
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
