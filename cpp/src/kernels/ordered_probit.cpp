// ordered_probit(y | eta, cutpoints) for y in {0, ..., C-1} (Stan's ordered_probit_lpmf, with
// categories counted from 0), C - 1 increasing cutpoints c_0 < ... < c_{C-2}; ordered_logistic with
// the standard normal CDF Phi in place of inv_logit:
//
//   P(y = 0)     = 1 - Phi(eta - c_0) = Phi(c_0 - eta)
//   P(y = k)     = Phi(a) - Phi(b),  a = eta - c_{k-1} > b = eta - c_k,   0 < k < C-1
//   P(y = C - 1) = Phi(eta - c_{C-2})
//
// The end categories are log Phi (special::LogPhi, exact to log Phi(-40) = -804.6 and beyond) with
// derivative phi / Phi (special::DLogPhi). A middle category's difference is formed on the side
// where it does not cancel:
//   a <= 0 (both in the left tail):  P = Phi(a) (1 - exp(u)),    u = log Phi(b) - log Phi(a) < 0
//   b >= 0 (both in the right tail): P = Phi(-b) (1 - exp(u)),   u = log Phi(-a) - log Phi(-b) < 0
//   b < 0 < a:                       P = (erf(a / sqrt 2) - erf(b / sqrt 2)) / 2, terms of opposite
//                                    sign, so no cancellation (P >= Phi(a) - 1/2 and 1/2 - Phi(b)).
// In the tails, Phi(a) and Phi(b) underflow long before their ratio does (eta - c ~ -40: both
// ~ 1e-350), so the partials are written as ratios of the log-scale quantities, never as phi / P:
//   a <= 0:  d log P / d a =  DLogPhi(a) / (1 - exp(u)),   d log P / d b = -DLogPhi(b) exp(u) / (1 - exp(u))
//   b >= 0:  d log P / d a =  DLogPhi(-a) exp(u) / (1 - exp(u)),   d log P / d b = -DLogPhi(-b) / (1 - exp(u))
//   else:    phi(a) / P and -phi(b) / P (P is at least ~ min(|a|, |b|) phi(0) there, no underflow).
// d/d eta is the sum of the two, d/d c_{k-1} = -d/da, d/d c_k = -d/db.
//
// Shapes and validation as ordered_logistic: y (N,) or (), eta y's shape or a scalar, cutpoints
// (C-1,), shared, strictly increasing if data.
#include <cmath>
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {

constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1 / sqrt(2 pi)

// log(1 - exp(u)) for u < 0 (Maechler's switch at -log 2).
inline double log1m_exp(double u) { return u > -math::kLog2 ? std::log(-std::expm1(u)) : std::log1p(-std::exp(u)); }

// log P(y = k) for a middle category and its partials in a = eta - c_{k-1} > b = eta - c_k.
struct Interval {
  double log_p, d_a, d_b;
};

inline Interval log_phi_difference(double a, double b) {
  const special::LogPhi log_phi;
  const special::DLogPhi d_log_phi;
  if (a <= 0.0 || b >= 0.0) {
    // Reflect the right tail onto the left one: Phi(a) - Phi(b) = Phi(-b) - Phi(-a).
    const bool left = a <= 0.0;
    const double hi = left ? a : -b, lo = left ? b : -a;  // hi > lo, both <= 0 (or hi ~ 0)
    const double l_hi = log_phi(hi), l_lo = log_phi(lo);
    const double u = l_lo - l_hi;  // < 0; NaN if the cutpoints are out of order
    const double q = -std::expm1(u), ratio = std::exp(u);
    const double d_hi = d_log_phi(hi) / q, d_lo = d_log_phi(lo) * ratio / q;
    // d/d hi, d/d lo of log(Phi(hi) - Phi(lo)); hi = a or -b, lo = b or -a.
    if (left) return {l_hi + log1m_exp(u), d_hi, -d_lo};
    return {l_hi + log1m_exp(u), d_lo, -d_hi};
  }
  const double p = 0.5 * (std::erf(a * special::kSqrt1_2) - std::erf(b * special::kSqrt1_2));
  const double inv = kInvSqrt2Pi / p;
  return {std::log(p), std::exp(-0.5 * a * a) * inv, -std::exp(-0.5 * b * b) * inv};
}

class OrderedProbit final : public Kernel {
 public:
  OrderedProbit(const Operand& y, Operand eta, Operand cuts) : eta_(std::move(eta)), cuts_(std::move(cuts)) {
    if (y.shape.size() > 1)
      throw std::invalid_argument("input 'y' must have shape (N,) or (), got " + format_shape(y.shape));
    n_ = y.size();
    if (eta_.shape.size() > 1 || (eta_.size() != n_ && eta_.size() != 1))
      throw std::invalid_argument("input 'eta' must have y's shape " + format_shape(y.shape) + " or be a scalar, got " +
                                  format_shape(eta_.shape));
    if (cuts_.shape.size() != 1 || cuts_.shape[0] < 1)
      throw std::invalid_argument("input 'cutpoints' must have shape (C-1,) with C >= 2 categories, got " +
                                  format_shape(cuts_.shape));
    k_ = cuts_.shape[0];  // C - 1
    if (!cuts_.is_param)
      for (Index j = 1; j < k_; ++j)
        if (!(cuts_.data[j] > cuts_.data[j - 1]))
          throw std::invalid_argument("input 'cutpoints' must be strictly increasing, got " +
                                      format_number(cuts_.data[j - 1]) + " then " + format_number(cuts_.data[j]) +
                                      " at flat index " + std::to_string(j));
    y_.resize(size_t(n_));
    for (Index i = 0; i < n_; ++i) {
      const double v = y.data[i];  // a count (checked by the registry's support)
      if (v > double(k_))
        throw std::invalid_argument("input 'y' must be a category 0.." + std::to_string(k_) +
                                    " (C - 1 = the number of cutpoints), got " + format_number(v) + " at flat index " +
                                    std::to_string(i));
      y_[size_t(i)] = Index(v);
    }
  }

  void evaluate(const Batch& b) const override {
    const special::LogPhi log_phi;
    const special::DLogPhi d_log_phi;
    const bool eta_scalar = eta_.size() == 1;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = 0.0;
      double* g_cuts = cuts_.is_param ? b.grad + s * b.ld + cuts_.row : nullptr;
      for (Index i = 0; i < n_; ++i) {
        const Index e = eta_scalar ? 0 : i;
        const double eta = eta_.value(b, e, s);
        const Index y = y_[size_t(i)];
        double d_eta = 0.0;
        if (y == 0) {  // log Phi(c_0 - eta)
          const double x = cuts_.value(b, 0, s) - eta;
          lp += log_phi(x);
          d_eta = -d_log_phi(x);
          if (g_cuts) g_cuts[0] -= d_eta;
        } else if (y == k_) {  // log Phi(eta - c_{C-2})
          const double x = eta - cuts_.value(b, k_ - 1, s);
          lp += log_phi(x);
          d_eta = d_log_phi(x);
          if (g_cuts) g_cuts[k_ - 1] -= d_eta;
        } else {
          const Interval t = log_phi_difference(eta - cuts_.value(b, y - 1, s), eta - cuts_.value(b, y, s));
          lp += t.log_p;
          d_eta = t.d_a + t.d_b;
          if (g_cuts) {
            g_cuts[y - 1] -= t.d_a;
            g_cuts[y] -= t.d_b;
          }
        }
        if (eta_.is_param) b.grad[s * b.ld + eta_.row + e] += d_eta;
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand eta_, cuts_;
  Index n_ = 0, k_ = 0;
  std::vector<Index> y_;
};

}  // namespace

void register_ordered_probit(KernelRegistry& r) {
  r.add({"ordered_probit",
         "Ordered probit: P(y <= k) = Phi(cutpoints[k] - eta) for y in {0, ..., C-1}",
         {{"y", Support::Count, true, std::nullopt, "category (N,) or (), data, from 0"},
          {"eta", Support::Real, false, std::nullopt, "linear predictor, y's shape or a scalar"},
          {"cutpoints", Support::Real, false, std::nullopt, "C - 1 increasing cutpoints (C-1,)"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<OrderedProbit>(ops[0], std::move(ops[1]), std::move(ops[2]));
         }});
}

}  // namespace fastvi::kernels
