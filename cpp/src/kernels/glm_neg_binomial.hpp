// The negative binomial family of the fused GLM driver (glm.cpp): neg_binomial_2_log_glm's
// column pass and its terms in phi. A header of its own so that glm.cpp stays one driver and
// three small families; only glm.cpp includes it.
#pragma once

#include <Eigen/Core>
#include <cmath>

#include "fastvi/math.hpp"
#include "fastvi/types.hpp"
#include "glm_families.hpp"
#include "special.hpp"

namespace fastvi::kernels::glm_families {

// neg_binomial_2_log(y | eta, phi) per row (neg_binomial_2.cpp has the derivation), with
// d = eta - log(phi):
//   lp     = R(phi, y) + y eta - (y + phi) log1p_exp(d) - lgamma(y + 1)
//   r      = y - (y + phi) inv_logit(d)
//   dphi   = digamma(y + phi) - digamma(phi) - log1p_exp(d) + inv_logit(d) - (y / phi) inv_logit(-d)
// R(phi, y) = log(Gamma(phi + y) / (Gamma(phi) phi^y)) and the digamma difference depend on y and
// phi only: the driver sums them over the distinct values of y (phi_terms), once per draw, not per
// row. The column pass does the rest (packet_column, glm_families.hpp), on BernoulliLogit's scheme: t = exp(-|d|) gives
// log1p_exp(d) = max(d, 0) + log1p(t), inv_logit(d) = 1 / (1 + t) or t / (1 + t), and inv_logit(-d)
// the other one (not 1 - inv_logit(d), which would lose the small one's digits).
struct NegBinomial2Log {
  static constexpr bool kHasSigma = false;
  static constexpr bool kHasPhi = true;
  static double constant(const Vector& y) {
    double c = 0.0;
    for (Index i = 0; i < y.size(); ++i) c -= math::log_gamma(y[i] + 1.0);
    return c;
  }
  // sum_v count_v R(phi, v) and sum_v count_v (digamma(phi + v) - digamma(phi)) over the distinct
  // values v of y.
  // (counts null: each of the n values once, as for a minibatch's rows.)
  static void phi_terms(double phi, const double* values, const double* counts, Index n, double& lp, double& dphi) {
    const special::LogRisingOverPower rising;
    const special::DigammaDifference digamma_difference;
    for (Index j = 0; j < n; ++j) {
      const double c = counts ? counts[j] : 1.0;
      lp += c * rising(phi, values[j]);
      dphi += c * digamma_difference(phi, values[j]);
    }
  }
  static void column(const double* y, double* eta, double* tmp, Index n, double offset, double phi, double& acc,
                     double& rsum, double& dphi) {
    using namespace Eigen::internal;
    (void)tmp;
    constexpr int M = kInterleave;
    const Packet off = pset1<Packet>(offset), zero = pset1<Packet>(0.0), phi_p = pset1<Packet>(phi);
    const Packet log_phi = pset1<Packet>(std::log(phi)), inv_phi = pset1<Packet>(1.0 / phi);
    double sums[3] = {0.0, 0.0, 0.0};  // sum r, sum lp, sum dphi
    packet_column<2>(
        y, eta, n,
        [&](const double* yy, const double* ee, Packet(&r)[M], Packet(&s)[2][M]) {
          Packet e[M], d[M], x[M], t[M], l[M], inv[M];
          for (int j = 0; j < M; ++j) {
            e[j] = padd(ploadu<Packet>(ee + j * kWidth), off);
            d[j] = psub(e[j], log_phi);
            x[j] = pnegate(pabs(d[j]));
          }
          exp_packets<M>(x, t);
          log1p_and_inverse<M>(t, l, inv);
          for (int j = 0; j < M; ++j) {
            const Packet y_j = ploadu<Packet>(yy + j * kWidth);
            const Packet softplus = padd(pmax(d[j], zero), l[j]);
            const Packet positive = pcmp_le(zero, d[j]), small = pmul(t[j], inv[j]);
            const Packet p = pselect(positive, inv[j], small), q = pselect(positive, small, inv[j]);
            const Packet y_phi = padd(y_j, phi_p);
            s[0][j] = psub(pmul(y_j, e[j]), pmul(y_phi, softplus));
            r[j] = psub(y_j, pmul(y_phi, p));
            s[1][j] = psub(psub(p, softplus), pmul(pmul(y_j, inv_phi), q));
          }
        },
        sums);
    rsum += sums[0];
    acc += sums[1];
    dphi += sums[2];
  }
};

}  // namespace fastvi::kernels::glm_families
