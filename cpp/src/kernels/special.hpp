// Special functions of the built-in distributions beyond elementwise_math.hpp: differences of log
// Gamma and digamma that stay accurate when their arguments are huge (negative binomial and
// beta-binomial in their Poisson / binomial limits), log Phi and its derivative far into the
// tails, log(1 - exp(-x)), log I0 and I1 / I0 for von Mises.
//
// Each is a scalar functor; `map<F>(a, ...)` applies it to doubles, or element by element to Eigen
// arrays (mixing arrays and doubles) as a lazy Eigen expression. These functions have no packet
// (SIMD) form, so on the driver's vectorised path they run in scalar code, one element at a time,
// inside the otherwise vectorised expression.
#pragma once

#include <Eigen/Core>
#include <cmath>
#include <limits>

#include "fastvi/elementwise_math.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels::special {

using elementwise::is_array_v;

// ---- map: a scalar functor over doubles or arrays ------------------------------------------------

template <class F, class A>
auto map(const A& a) {
  if constexpr (is_array_v<A>)
    return a.unaryExpr(F());
  else
    return F()(double(a));
}

template <class F, class A, class B>
auto map(const A& a, const B& b) {
  if constexpr (!is_array_v<A> && !is_array_v<B>) {
    return F()(double(a), double(b));
  } else {
    const Index n = std::max(elementwise::detail::size_of(a), elementwise::detail::size_of(b));
    using Aa = decltype(elementwise::detail::as_array(a, n));
    using Ab = decltype(elementwise::detail::as_array(b, n));
    return Eigen::CwiseBinaryOp<F, const Aa, const Ab>(elementwise::detail::as_array(a, n),
                                                       elementwise::detail::as_array(b, n));
  }
}

// ---- log Gamma and digamma differences -----------------------------------------------------------

// The asymptotic series of log Gamma beyond Stirling's leading terms:
// log Gamma(x) = (x - 1/2) log x - x + log(2 pi) / 2 + stirling_series(x); for x >= 10 the first
// omitted term is below 1e-16.
inline double stirling_series(double x) {
  const double inv = 1.0 / x, inv2 = inv * inv;
  double s = 1.0 / 156.0;
  s = s * inv2 - 691.0 / 360360.0;
  s = s * inv2 + 1.0 / 1188.0;
  s = s * inv2 - 1.0 / 1680.0;
  s = s * inv2 + 1.0 / 1260.0;
  s = s * inv2 - 1.0 / 360.0;
  s = s * inv2 + 1.0 / 12.0;
  return s * inv;
}

// The series of digamma beyond its leading terms: digamma(x) = log x - 1 / (2x) - digamma_series(x);
// for x >= 10 the first omitted term (3617 / (8160 x^16)) is below 5e-17.
inline double digamma_series(double x) {
  const double inv2 = 1.0 / (x * x);
  double s = 1.0 / 12.0;
  s = s * inv2 - 691.0 / 32760.0;
  s = s * inv2 + 1.0 / 132.0;
  s = s * inv2 - 1.0 / 240.0;
  s = s * inv2 + 1.0 / 252.0;
  s = s * inv2 - 1.0 / 120.0;
  s = s * inv2 + 1.0 / 12.0;
  return s * inv2;
}

// Below this, the differences use log Gamma and digamma directly (their values are moderate there).
inline constexpr double kLargeArgument = 10.0;

// log(Gamma(x + n) / (Gamma(x) x^n)) for x > 0, n >= 0 (n need not be an integer). It tends to 0
// as x grows with n fixed, where lgamma(x + n) - lgamma(x) - n log(x) would lose everything to
// cancellation (lgamma(1e10) ~ 2e11): for x >= 10 it is
//   (x + n - 1/2) log1p(n / x) - n + stirling_series(x + n) - stirling_series(x),
// with an absolute error of a few ulp of n.
struct LogRisingOverPower {
  double operator()(double x, double n) const {
    if (n == 0) return 0.0;
    if (x < kLargeArgument) return math::log_gamma(x + n) - math::log_gamma(x) - n * std::log(x);
    return (x + n - 0.5) * std::log1p(n / x) - n + (stirling_series(x + n) - stirling_series(x));
  }
};

// digamma(x + n) - digamma(x) for x > 0, n >= 0: for x >= 10,
//   log1p(n / x) + n / (2 x (x + n)) - (digamma_series(x + n) - digamma_series(x)),
// accurate where the difference (~ n / x) is far below digamma(x) ~ log x.
struct DigammaDifference {
  double operator()(double x, double n) const {
    if (n == 0) return 0.0;
    if (x < kLargeArgument) return math::digamma(x + n) - math::digamma(x);
    return std::log1p(n / x) + n / (2.0 * x * (x + n)) - (digamma_series(x + n) - digamma_series(x));
  }
};

// ---- the normal CDF in the log scale ---------------------------------------------------------------

inline constexpr double kSqrt1_2 = 0.70710678118654752440;      // 1 / sqrt(2)
inline constexpr double kSqrt2 = 1.41421356237309504880;        // sqrt(2)
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
inline constexpr double kHalfLogPi = 0.57236494292470008707;    // log(sqrt(pi))
// erfc(t) is a normal double (> 2.2e-308) up to t ~ 26.5; beyond 25 the asymptotic series is used.
inline constexpr double kErfcAsymptotic = 25.0;

// For t >= 25: erfc(t) = exp(-t^2) / (t sqrt(pi)) * erfc_series(t), with
// erfc_series(t) = sum_k (-1)^k (2k - 1)!! / (2 t^2)^k; at t = 25 the terms fall below 1e-17 by k = 7.
inline double erfc_series(double t) {
  const double u = 1.0 / (2.0 * t * t);
  double term = 1.0, sum = 1.0;
  for (int k = 1; k <= 9; ++k) {
    term *= -(2.0 * k - 1.0) * u;
    sum += term;
  }
  return sum;
}

// log Phi(x), Phi the standard normal CDF, for every x: log(erfc(-x / sqrt 2) / 2) while erfc is a
// normal double (relative accuracy of erfc, so log Phi(-30) = -454.3... to ~1e-16 relative), the
// asymptotic series below x = -25 sqrt 2 (log Phi(-40) = -804.608...), and log1p(-Phi(-x)) for x > 0
// (log Phi(10) = -7.6e-24, not 0).
struct LogPhi {
  double operator()(double x) const {
    if (x > 0) return std::log1p(-0.5 * std::erfc(x * kSqrt1_2));
    const double t = -x * kSqrt1_2;  // >= 0
    if (t < kErfcAsymptotic) return std::log(0.5 * std::erfc(t));
    return -t * t - std::log(t) - kHalfLogPi - math::kLog2 + std::log(erfc_series(t));
  }
};

// exp(-t^2) to about an ulp: t^2 split as hi^2 (exact, hi of 26 bits) + the rest, as erfc does
// internally (exp(-t * t) would carry t * t's rounding, a relative error of up to t^2 ulp: 1e-13 at 25).
inline double exp_neg_square(double t) {
  const double c = 134217729.0 * t;  // 2^27 + 1: Veltkamp's split
  const double hi = c - (c - t), lo = t - hi;
  return std::exp(-hi * hi) * std::exp(-lo * (hi + t));
}

// d/dx log Phi(x) = phi(x) / Phi(x), the inverse Mills ratio, with t = -x / sqrt 2:
// sqrt(2 / pi) exp(-t^2) / erfc(t), numerator and denominator from the same t; in the far left
// tail, where both underflow, sqrt 2 t / erfc_series(t) (-> -x); on the right it tends to 0.
struct DLogPhi {
  double operator()(double x) const {
    const double t = -x * kSqrt1_2;
    if (t < kErfcAsymptotic) return kSqrt2OverPi * exp_neg_square(t) / std::erfc(t);
    return kSqrt2 * t / erfc_series(t);
  }
};

// ---- log(1 - exp(-x)) --------------------------------------------------------------------------------

// log(1 - exp(-x)) for x > 0: log(-expm1(-x)) for x <= log 2, log1p(-exp(-x)) above (Maechler's
// log1mexp). -inf at x = 0.
struct Log1mExpNeg {
  double operator()(double x) const { return x <= math::kLog2 ? std::log(-std::expm1(-x)) : std::log1p(-std::exp(-x)); }
};

// x / expm1(x) for x >= 0: d/dx log(1 - exp(-x)) = 1 / expm1(x), times x; 1 at x = 0 (not 0 / 0),
// 0 where expm1 overflows.
struct XOverExpm1 {
  double operator()(double x) const { return x < 1e-10 ? 1.0 - 0.5 * x : x / std::expm1(x); }
};

// ---- modified Bessel functions of order 0 and 1 (von Mises) -------------------------------------

// Above this, I0 and I1 use their asymptotic expansions (std::cyl_bessel_i overflows near 713).
inline constexpr double kBesselAsymptotic = 500.0;

// sqrt(2 pi k) exp(-k) I_nu(k) for k >= 500, nu = 0 or 1: the asymptotic series
// sum_j (-1)^j prod_{i <= j} (mu - (2i - 1)^2) / (j! (8k)^j), mu = 4 nu^2; its terms fall below
// 1e-17 by j = 7 at k = 500.
inline double bessel_i_scaled_series(int nu, double k) {
  const double mu = 4.0 * nu * nu;
  double term = 1.0, sum = 1.0;
  for (int j = 1; j <= 9; ++j) {
    const double odd = 2.0 * j - 1.0;
    term *= -(mu - odd * odd) / (j * 8.0 * k);
    sum += term;
  }
  return sum;
}

// log I0(k) - k = log(exp(-k) I0(k)) for k >= 0 (von Mises' normaliser less its leading term, so
// that kappa (cos d - 1) - this has no cancellation for large kappa): below k = 1, log1p of
// I0 - 1 = sum_j (k^2 / 4)^j / (j!)^2 (log I0(1e-8) = 2.5e-17, not 0; its terms fall below 1e-17
// relative by j = 9); std::cyl_bessel_i below 500; the scaled asymptotic series above.
struct LogBesselI0Scaled {
  double operator()(double k) const {
    if (k < 1.0) {
      const double q = 0.25 * k * k;
      double term = 1.0, sum = 0.0;
      for (int j = 1; j <= 10; ++j) {
        term *= q / (double(j) * double(j));
        sum += term;
      }
      return std::log1p(sum) - k;
    }
    if (k < kBesselAsymptotic) return std::log(std::cyl_bessel_i(0.0, k)) - k;
    return -0.5 * std::log(2.0 * math::kPi * k) + std::log(bessel_i_scaled_series(0, k));
  }
};

// 1 - I1(k) / I0(k) for k >= 0 (d/dk of log I0(k) - k): above 500 as (S0 - S1) / S0 with the
// series' terms subtracted pairwise (their leading 1s cancel exactly), so that it keeps its
// relative accuracy as it tends to 1 / (2k).
struct OneMinusBesselI1OverI0 {
  double operator()(double k) const {
    if (k < kBesselAsymptotic) return k == 0 ? 1.0 : 1.0 - std::cyl_bessel_i(1.0, k) / std::cyl_bessel_i(0.0, k);
    double t0 = 1.0, t1 = 1.0, s0 = 1.0, diff = 0.0;
    for (int j = 1; j <= 9; ++j) {
      const double odd = 2.0 * j - 1.0;
      t0 *= odd * odd / (j * 8.0 * k);
      t1 *= -(4.0 - odd * odd) / (j * 8.0 * k);
      s0 += t0;
      diff += t0 - t1;
    }
    return diff / s0;
  }
};

// ---- trigonometry over doubles and arrays ------------------------------------------------------------

inline double cos(double x) { return std::cos(x); }
template <class T, elementwise::if_array<T> = 0>
auto cos(const T& x) {
  return x.cos();
}
inline double sin(double x) { return std::sin(x); }
template <class T, elementwise::if_array<T> = 0>
auto sin(const T& x) {
  return x.sin();
}

}  // namespace fastvi::kernels::special
