// Censoring companions of gamma(shape a, rate b), x = b * y:
//   gamma_lcdf(y | shape, rate)  = log P(a, x)   (left-censored: log P(Y <= y))
//   gamma_lccdf(y | shape, rate) = log Q(a, x)   (right-censored: log P(Y > y))
// with P, Q the regularised lower and upper incomplete gamma functions, Q = 1 - P, computed in
// the log scale (Numerical Recipes' split):
//   x < a + 1: the series P = x^a e^-x / Gamma(a + 1) S,  S = sum_n t_n,  t_0 = 1,
//              t_n = t_(n-1) x / (a + n)   (positive terms);
//   otherwise: Q = x^a e^-x / Gamma(a) h, h the continued fraction 1 / (x + 1 - a - 1 (1 - a) /
//              (x + 3 - a - 2 (2 - a) / ...)), by the modified Lentz algorithm;
// the other one as log1m_exp, so that log Q(a, x) stays finite far beyond where Q underflows.
// Partials: in x (so in y and rate) exactly, d log P / dx = x^(a-1) e^-x / (Gamma(a) P); in the
// shape by differentiating the convergent series term by term (d t_n / da = t_n c_n,
// c_n = -sum_(k <= n) 1 / (a + k): all of one sign, no cancellation) or the continued fraction's
// recurrence in forward mode (its value and a-derivative together, iterated until both settle).
// Both loops run in scalar code (special::map); they take O(sqrt(a)) terms near x ~ a, so a shape
// in the millions is slow.
#include <cmath>

#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

// log P(a, x) (Lower = true) or log Q(a, x), and its partial in a.
struct IncGamma {
  double value, d_shape;
};

constexpr double kEps = 1e-17;
constexpr int kMaxTerms = 1000000;

// A value and its derivative in a (forward mode, for the continued fraction).
struct Dual {
  double v, d;
};
inline Dual operator+(Dual p, Dual q) { return {p.v + q.v, p.d + q.d}; }
inline Dual operator*(Dual p, Dual q) { return {p.v * q.v, p.d * q.v + p.v * q.d}; }
inline Dual inverse(Dual p) { return {1.0 / p.v, -p.d / (p.v * p.v)}; }

// a log(x) - x - log Gamma(a), without the cancellation between its terms (each ~a log a) for
// large a: with Stirling's series, a log(x / a) - (x - a) + log(a) / 2 - log(2 pi) / 2
// - stirling_series(a), log(x / a) as log1p((x - a) / a) where x is near a.
inline double log_prefactor(double a, double x, double log_x) {
  if (a < special::kLargeArgument) return a * log_x - x - math::log_gamma(a);
  const double r = x / a;
  const double log_r = r > 0.5 && r < 2.0 ? std::log1p((x - a) / a) : std::log(r);
  return a * log_r - (x - a) + 0.5 * std::log(a) - math::kHalfLog2Pi - special::stirling_series(a);
}

template <bool Lower>
IncGamma inc_gamma(double a, double x, bool with_shape) {
  const double log_x = std::log(x);
  double log_p, d_log_p, log_q, d_log_q;
  if (x < a + 1.0) {
    // Series for P.
    double t = 1.0, sum = 1.0, c = 0.0, dsum = 0.0;
    for (int n = 1; n < kMaxTerms; ++n) {
      t *= x / (a + n);
      c -= 1.0 / (a + n);
      sum += t;
      dsum += t * c;
      if (t < kEps * sum) break;
    }
    log_p = log_prefactor(a, x, log_x) - std::log(a) + std::log(sum);
    d_log_p = with_shape ? log_x - math::digamma(a + 1.0) + dsum / sum : 0.0;
    log_q = special::Log1mExpNeg()(-log_p);
    d_log_q = -std::exp(log_p - log_q) * d_log_p;
  } else {
    // Continued fraction for Q (modified Lentz), with d/da alongside.
    constexpr double kTiny = 1e-300;
    Dual b = {x + 1.0 - a, -1.0};
    Dual c = {1.0 / kTiny, 0.0};
    Dual d = inverse(b);
    Dual h = d;
    for (int i = 1; i < kMaxTerms; ++i) {
      const Dual an = {-i * (i - a), double(i)};
      b = b + Dual{2.0, 0.0};
      d = an * d + b;
      if (std::abs(d.v) < kTiny) d.v = kTiny;
      c = b + an * inverse(c);
      if (std::abs(c.v) < kTiny) c.v = kTiny;
      d = inverse(d);
      const Dual del = d * c;
      h = h * del;
      if (std::abs(del.v - 1.0) < kEps * 4 && (!with_shape || std::abs(del.d) <= kEps * 4 * std::abs(h.d / h.v))) break;
    }
    log_q = log_prefactor(a, x, log_x) + std::log(h.v);
    d_log_q = with_shape ? log_x - math::digamma(a) + h.d / h.v : 0.0;
    log_p = special::Log1mExpNeg()(-log_q);
    d_log_p = -std::exp(log_q - log_p) * d_log_q;
  }
  return Lower ? IncGamma{log_p, d_log_p} : IncGamma{log_q, d_log_q};
}

template <bool Lower>
struct LogIncGamma {
  double operator()(double a, double x) const { return inc_gamma<Lower>(a, x, false).value; }
};
template <bool Lower>
struct DLogIncGammaDShape {
  double operator()(double a, double x) const { return inc_gamma<Lower>(a, x, true).d_shape; }
};

template <bool Lower>
struct GammaCdf {
  static constexpr const char* name = Lower ? "gamma_lcdf" : "gamma_lccdf";
  static constexpr const char* doc = Lower
                                         ? "log P(Y <= y), Y ~ Gamma(shape, rate), y > 0 (left-censored observations)"
                                         : "log P(Y > y), Y ~ Gamma(shape, rate), y > 0 (right-censored observations)";
  static constexpr Input inputs[] = {{"y", Support::Positive, false, std::nullopt, "variate (censoring point)"},
                                     {"shape", Support::Positive, false, std::nullopt, "shape (alpha)"},
                                     {"rate", Support::Positive, false, std::nullopt, "rate (beta = 1 / scale)"}};
  enum { kY, kShape, kRate };

  template <class Out, class Y, class Shape, class Rate>
  static void log_density(Out& out, const Y& y, const Shape& a, const Rate& rate) {
    const auto x = out.keep(rate * y);
    const auto lp = out.keep(special::map<LogIncGamma<Lower>>(a, x));
    out.lp(lp);
    // d log P / dx = gamma density at x / P (and -density / Q for the upper tail).
    const auto dx = out.keep((Lower ? 1.0 : -1.0) * exp((a - 1.0) * log(x) - x - log_gamma(a) - lp));
    out.grad(kY, dx * rate);
    out.grad(kRate, dx * y);
    if (out.param(kShape)) out.grad(kShape, special::map<DLogIncGammaDShape<Lower>>(a, x));
  }
};

}  // namespace

void register_gamma_cdf(KernelRegistry& r) {
  register_elementwise<GammaCdf<true>>(r);
  register_elementwise<GammaCdf<false>>(r);
}

}  // namespace fastvi::kernels
