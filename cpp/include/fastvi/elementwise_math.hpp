// The maths a distribution's log_density is written in (elementwise.hpp): each function takes a
// double and returns one, or takes an Eigen array expression and returns an expression, so that
// one log_density serves the per-element path (doubles) and the vectorised path (arrays of a run
// of elements). Among them, packet (SIMD) forms of log Gamma and digamma and a vectorised
// if_nonneg, which Eigen 3.4 does not offer.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "fastvi/math.hpp"
#include "fastvi/types.hpp"

namespace fastvi::elementwise::detail {
struct IfNonneg;
struct LogGammaOp;
struct DigammaOp;
}  // namespace fastvi::elementwise::detail
namespace Eigen::internal {
template <>
struct functor_traits<fastvi::elementwise::detail::IfNonneg> {
  enum { Cost = 3, PacketAccess = 1 };
};
template <>
struct functor_traits<fastvi::elementwise::detail::LogGammaOp> {
  enum { Cost = 60, PacketAccess = 1 };
};
template <>
struct functor_traits<fastvi::elementwise::detail::DigammaOp> {
  enum { Cost = 60, PacketAccess = 1 };
};
}  // namespace Eigen::internal

namespace fastvi::elementwise {

template <class T>
inline constexpr bool is_array_v = std::is_base_of_v<Eigen::ArrayBase<T>, T>;
template <class T>
using if_array = std::enable_if_t<is_array_v<T>, int>;

namespace detail {

// Packet forms of log Gamma and digamma for x > 0, without branches: shift by the recurrence to
// z = x + 10 (always for digamma; for log Gamma only where x < 10, since the product of the ten
// factors would overflow for large x), then the asymptotic series at z >= 10, whose truncation
// error is below 1e-15 there. Tails of an array shorter than a packet use the scalar forms. Over
// x in [1e-3, 1e9] they agree with lgamma to 1e-14 max(|lgamma|, 1) and with math::digamma to
// 2e-14 max(|digamma|, 1).
struct LogGammaOp {
  double operator()(double x) const { return math::log_gamma(x); }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    using namespace Eigen::internal;
    const Packet one = pset1<Packet>(1.0), ten = pset1<Packet>(10.0);
    // log Gamma(x) = log Gamma(x + 10) - log(x (x + 1) ... (x + 9)).
    Packet product = x, u = x;
    for (int k = 1; k < 10; ++k) {
      u = padd(u, one);
      product = pmul(product, u);
    }
    const Packet shift = pcmp_lt(x, ten);
    const Packet z = pselect(shift, padd(x, ten), x);
    const Packet inv = pdiv(one, z), inv2 = pmul(inv, inv);
    // Stirling: (z - 1/2) log z - z + log(2 pi) / 2 + sum_k B_2k / (2k (2k - 1) z^(2k - 1)).
    Packet series = pset1<Packet>(1.0 / 156.0);
    series = pmadd(series, inv2, pset1<Packet>(-691.0 / 360360.0));
    series = pmadd(series, inv2, pset1<Packet>(1.0 / 1188.0));
    series = pmadd(series, inv2, pset1<Packet>(-1.0 / 1680.0));
    series = pmadd(series, inv2, pset1<Packet>(1.0 / 1260.0));
    series = pmadd(series, inv2, pset1<Packet>(-1.0 / 360.0));
    series = pmadd(series, inv2, pset1<Packet>(1.0 / 12.0));
    const Packet stirling =
        padd(pmadd(psub(z, pset1<Packet>(0.5)), plog(z), psub(pset1<Packet>(math::kHalfLog2Pi), z)), pmul(series, inv));
    const Packet result = psub(stirling, pselect(shift, plog(product), pzero(x)));
    return pselect(pcmp_eq(x, pset1<Packet>(kInf)), x, result);  // +inf, not inf - inf
  }
};

struct DigammaOp {
  double operator()(double x) const { return math::digamma(x); }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    using namespace Eigen::internal;
    const Packet one = pset1<Packet>(1.0);
    // digamma(x) = digamma(x + 10) - sum_{k < 10} 1 / (x + k), the sum by pairs:
    // 1 / u + 1 / (u + 1) = (2u + 1) / (u (u + 1)).
    Packet sum = pzero(x), u = x;
    for (int k = 0; k < 10; k += 2) {
      const Packet u1 = padd(u, one);
      sum = padd(sum, pdiv(padd(u, u1), pmul(u, u1)));
      u = padd(u1, one);
    }
    const Packet z = u;  // x + 10
    const Packet inv = pdiv(one, z), inv2 = pmul(inv, inv);
    // log z - 1 / (2z) - inv2 (1/12 - inv2 (1/120 - inv2 (1/252 - inv2 (1/240 - inv2 / 132)))).
    Packet series = pset1<Packet>(-1.0 / 132.0);
    series = pmadd(series, inv2, pset1<Packet>(1.0 / 240.0));
    series = pmadd(series, inv2, pset1<Packet>(-1.0 / 252.0));
    series = pmadd(series, inv2, pset1<Packet>(1.0 / 120.0));
    series = pmadd(series, inv2, pset1<Packet>(-1.0 / 12.0));
    const Packet asymptotic = padd(psub(plog(z), pmul(pset1<Packet>(0.5), inv)), pmul(series, inv2));
    return pselect(pcmp_eq(x, pset1<Packet>(kInf)), x, psub(asymptotic, sum));  // +inf, not inf / inf
  }
};

}  // namespace detail

// ---- Maths over double and Eigen arrays ---------------------------------------------------------
//
// Each function takes a double and returns one, or takes an Eigen array expression and returns an
// expression (lazy: keep() it if it is costly and used twice). The array forms take the argument
// by its exact type, so that they win over Eigen's own (found by argument-dependent lookup).

inline double log(double x) { return std::log(x); }
template <class T, if_array<T> = 0>
auto log(const T& x) {
  return x.log();
}

inline double exp(double x) { return std::exp(x); }
template <class T, if_array<T> = 0>
auto exp(const T& x) {
  return x.exp();
}

inline double sqrt(double x) { return std::sqrt(x); }
template <class T, if_array<T> = 0>
auto sqrt(const T& x) {
  return x.sqrt();
}

inline double abs(double x) { return std::abs(x); }
template <class T, if_array<T> = 0>
auto abs(const T& x) {
  return x.abs();
}

inline double square(double x) { return x * x; }
template <class T, if_array<T> = 0>
auto square(const T& x) {
  return x.square();
}

// -1, 0 or 1.
inline double sign(double x) { return double((x > 0) - (x < 0)); }
template <class T, if_array<T> = 0>
auto sign(const T& x) {
  return x.sign();
}

inline double max(double a, double b) { return std::max(a, b); }
template <class T, if_array<T> = 0>
auto max(const T& a, double b) {
  return a.max(b);
}
template <class T, if_array<T> = 0>
auto max(double a, const T& b) {
  return b.max(a);
}
template <class T, class U, if_array<T> = 0, if_array<U> = 0>
auto max(const T& a, const U& b) {
  return a.max(b);
}

// log(1 + x) for x > -1. Eigen has no vectorised log1p for double; the array form builds on log:
// with u = 1 + x, log(u) - ((u - 1) - x) / u is good to a few ulp (and gives x when u rounds to 1).
inline double log1p(double x) { return std::log1p(x); }
template <class T, if_array<T> = 0>
auto log1p(const T& x) {
  return (1.0 + x).log() - (((1.0 + x) - 1.0) - x) / (1.0 + x);
}

// log(1 + t) for t >= 0, e.g. t = exp(-|x|); the array form is math.hpp's (good to about an ulp).
inline double log1p_nonneg(double t) { return std::log1p(t); }
template <class T, if_array<T> = 0>
auto log1p_nonneg(const T& t) {
  return math::log1p_nonneg(t);
}

// log(1 - x) for x < 1.
inline double log1m(double x) { return std::log1p(-x); }
template <class T, if_array<T> = 0>
auto log1m(const T& x) {
  return log1p(-x);
}

// log(1 + exp(x)) without overflow.
inline double log1p_exp(double x) { return math::log1p_exp(x); }
template <class T, if_array<T> = 0>
auto log1p_exp(const T& x) {
  return x.max(0.0) + math::log1p_nonneg((-x.abs()).exp());
}

// 1 / (1 + exp(-x)) (see math.hpp for the array form's range).
inline double inv_logit(double x) { return math::inv_logit(x); }
template <class T, if_array<T> = 0>
auto inv_logit(const T& x) {
  return math::inv_logit(x);
}

// log Gamma(x) and digamma(x) for x > 0. Doubles: math.hpp's (lgamma_r, and a recurrence up to
// x >= 10 then the asymptotic series). Arrays: vectorised versions of the same series (packet
// functors below); they agree with the scalar forms to about 1e-14 absolute.
inline double log_gamma(double x) { return math::log_gamma(x); }
template <class T, if_array<T> = 0>
auto log_gamma(const T& x) {
  return x.unaryExpr(detail::LogGammaOp());
}

// The double form is kept out of line: inlined into a flattened element loop, the recurrence's x
// could be given a stack slot, a store and reload per step (beta with broadcast parameters ran 20 %
// slower than its hand-written kernel).
[[gnu::noinline]] inline double digamma(double x) { return math::digamma(x); }
template <class T, if_array<T> = 0>
auto digamma(const T& x) {
  return x.unaryExpr(detail::DigammaOp());
}

// log Beta(a, b).
template <class A, class B>
auto log_beta(const A& a, const B& b) {
  return log_gamma(a) + log_gamma(b) - log_gamma(a + b);
}

// x >= 0 ? a : b, element by element; vectorised (Eigen 3.4's select() is not). NaN x gives b.
inline double if_nonneg(double x, double a, double b) { return x >= 0 ? a : b; }

namespace detail {
struct IfNonneg {
  double operator()(double x, double a, double b) const { return x >= 0 ? a : b; }
  template <class Packet>
  Packet packetOp(const Packet& x, const Packet& a, const Packet& b) const {
    using namespace Eigen::internal;
    return pselect(pcmp_le(pzero(x), x), a, b);
  }
#ifdef EIGEN_VECTORIZE_AVX512
  // Eigen's pcmp_le and pselect go through a vector mask (vpmovm2q, vptestnmq): a loop of
  // if_nonneg(eta, 1, t) / (1 + t) took twice as long as with the comparison's mask register.
  Eigen::internal::Packet8d packetOp(const Eigen::internal::Packet8d& x, const Eigen::internal::Packet8d& a,
                                     const Eigen::internal::Packet8d& b) const {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GE_OQ), b, a);
  }
#endif
};
// An array operand of if_nonneg: arrays as they are, a double as a constant of n elements.
template <class T>
auto as_array(const T& v, Index n) {
  if constexpr (is_array_v<T>)
    return v;
  else
    return Eigen::ArrayXd::Constant(n, double(v));
}
template <class T>
Index size_of(const T& v) {
  if constexpr (is_array_v<T>)
    return v.size();
  else
    return -1;
}
}  // namespace detail

template <class X, class A, class B, std::enable_if_t<is_array_v<X> || is_array_v<A> || is_array_v<B>, int> = 0>
auto if_nonneg(const X& x, const A& a, const B& b) {
  const Index n = std::max({detail::size_of(x), detail::size_of(a), detail::size_of(b)});
  using Ax = decltype(detail::as_array(x, n));
  using Aa = decltype(detail::as_array(a, n));
  using Ab = decltype(detail::as_array(b, n));
  return Eigen::CwiseTernaryOp<detail::IfNonneg, const Ax, const Aa, const Ab>(
      detail::as_array(x, n), detail::as_array(a, n), detail::as_array(b, n));
}

}  // namespace fastvi::elementwise
