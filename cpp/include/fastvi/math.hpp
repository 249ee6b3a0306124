// Scalar special functions used by the kernels, written to stay finite where the naive forms
// overflow.
#pragma once

#include <cmath>

namespace fastvi::math {

inline constexpr double kLogPi = 1.1447298858494002;
inline constexpr double kLog2 = 0.69314718055994530942;
inline constexpr double kHalfLog2Pi = 0.91893853320467274178;  // log(sqrt(2 pi))
inline constexpr double kPi = 3.14159265358979323846;

// log(1 + exp(x)) without overflow.
inline double log1p_exp(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// 1 / (1 + exp(-x)) without overflow.
inline double inv_logit(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// log Gamma(x) for x > 0; reentrant (std::lgamma writes the global signgam).
inline double log_gamma(double x) {
  int sign;
  return lgamma_r(x, &sign);
}

// d/dx log Gamma(x) for x > 0: recurrence up to x >= 10, then the asymptotic series, whose first
// omitted term (691 / (32760 x^12)) is below 3e-14 there. (With the switch at 6 the error reached
// 1e-11.) x <= 0 or NaN returns -inf (at 0) or NaN instead of looping: kernels only call it for
// positive inputs, but a parameter can underflow to 0.
inline double digamma(double x) {
  if (!(x > 0)) return x == 0 ? -HUGE_VAL : std::nan("");
  double result = 0.0;
  while (x < 10.0) {
    result -= 1.0 / x;
    x += 1.0;
  }
  const double inv = 1.0 / x, inv2 = inv * inv;
  result += std::log(x) - 0.5 * inv -
            inv2 * (1.0 / 12 - inv2 * (1.0 / 120 - inv2 * (1.0 / 252 - inv2 * (1.0 / 240 - inv2 * (1.0 / 132)))));
  return result;
}

// log Beta(a, b).
inline double log_beta(double a, double b) { return log_gamma(a) + log_gamma(b) - log_gamma(a + b); }

}  // namespace fastvi::math
