// Special functions used by the kernels, written to stay finite where the naive forms overflow:
// scalar forms, and array forms (at the end) for code that works on a whole draw with Eigen.
#pragma once

#include <Eigen/Core>
#include <cmath>

namespace fastvi::math {

inline constexpr double kLogPi = 1.1447298858494002;
inline constexpr double kLog2 = 0.69314718055994530942;
inline constexpr double kHalfLog2Pi = 0.91893853320467274178;  // log(sqrt(2 pi))
inline constexpr double kPi = 3.14159265358979323846;
inline constexpr double kHalfLog2PiE = 1.4189385332046727;  // (1 + log(2 pi)) / 2, a N(0, 1)'s entropy

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

// Array forms. Eigen vectorises exp and log for double, but has no vectorised log1p; these build
// on exp and log. Each returns an Eigen expression: assign it, or sum it, straight away.

// log(1 + t) for t >= 0 (as in log1p_exp, t = exp(-|x|)): with u = 1 + t,
// log(u) - ((u - 1) - t) / u is exact to about an ulp (and gives t when u rounds to 1).
template <class Derived>
auto log1p_nonneg(const Eigen::ArrayBase<Derived>& t) {
  return (1.0 + t).log() - (((1.0 + t) - 1.0) - t) / (1.0 + t);
}

// 1 / (1 + exp(-x)), element-wise. exp(-x) overflows to inf below x = -709.78, where the result
// (below 1e-308) becomes 0; elsewhere this is as accurate as the two-branch scalar form.
template <class Derived>
auto inv_logit(const Eigen::ArrayBase<Derived>& x) {
  return 1.0 / (1.0 + (-x).exp());
}

}  // namespace fastvi::math
