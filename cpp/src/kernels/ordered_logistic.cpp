// ordered_logistic(y | eta, cutpoints) for y in {0, ..., C-1} (Stan's ordered_logistic_lpmf, with
// categories counted from 0), C - 1 increasing cutpoints c_0 < ... < c_{C-2}:
//
//   P(y = 0)     = 1 - inv_logit(eta - c_0)
//   P(y = k)     = inv_logit(eta - c_{k-1}) - inv_logit(eta - c_k),   0 < k < C-1
//   P(y = C - 1) = inv_logit(eta - c_{C-2})
//
// In logs, without cancellation (a = eta - c_{k-1} > b = eta - c_k, so that
// inv_logit(a) - inv_logit(b) = inv_logit(a) inv_logit(-b) (1 - exp(b - a))):
//   log P(0)     = -log1p_exp(eta - c_0)
//   log P(C-1)   = -log1p_exp(c_{C-2} - eta)
//   log P(k)     = -log1p_exp(-a) - log1p_exp(b) + L_k,   L_k = log(1 - exp(-(c_k - c_{k-1})))
// L_k depends on the cutpoints only: it is computed once per category and draw, not per row, and
// so is its derivative, q_k = d L_k / d c_k = -d L_k / d c_{k-1} = 1 / expm1(c_k - c_{k-1}).
// The rest is a sum of softplus terms, -log1p_exp(z) with z = +-(eta - c_j), whose partials are
// inv_logit(z), finite for every z: d/d eta log P(k) = inv_logit(-a) - inv_logit(b) (L_k does not
// depend on eta).
//
// The rows are sorted by category when the factor is built, so that each category's rows are one
// run with the same two cutpoints, and each run goes through packet (SIMD) code: one exp and one
// log1p with one division per softplus term and its partial (packet_math.hpp), where the
// row-by-row form took two log1p_exp, a log1m_exp and two exps per row.
//
// eta has shape (N,) like y (or () for all outcomes); the cutpoints (C-1,), shared.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"
#include "packet_math.hpp"

namespace fastvi::kernels {
namespace {

using simd::kWidth;
using simd::Packet;

// log(1 - exp(x)) for x < 0 (Maechler's switch at -log 2).
inline double log1m_exp(double x) { return x > -math::kLog2 ? std::log(-std::expm1(x)) : std::log1p(-std::exp(x)); }

// For z_i = sign (x_i - shift), i < n: returns the sums of log1p_exp(z_i) and of inv_logit(z_i),
// and sets d_i (Add: adds to it) to d/dx_i of -log1p_exp(z_i), -sign inv_logit(z_i).
// log1p_exp(z) = max(z, 0) + log1p(t) and inv_logit(z) = 1 / (1 + t) or t / (1 + t) by the sign of
// z, with t = exp(-|z|) (as the logistic GLM's column, glm.cpp). kInterleave packets at a time; the
// last partial group is padded, so that every element goes through the same arithmetic.
template <bool Add>
std::pair<double, double> softplus_terms(const double* x, Index n, double shift, double sign, double* d) {
  using namespace Eigen::internal;
  constexpr int M = 4;
  constexpr Index kGroup = M * kWidth;
  const Packet p_shift = pset1<Packet>(shift), p_sign = pset1<Packet>(sign), p_minus = pset1<Packet>(-sign);
  // exp(-750) is 0 in doubles; the clamp keeps the range reduction in exp_packets finite.
  const Packet zero = pset1<Packet>(0.0), lowest = pset1<Packet>(-750.0);
  auto terms = [&](const double* xx, Packet(&sp)[M], Packet(&sg)[M]) {
    Packet z[M], u[M], t[M], l[M], inv[M];
    for (int j = 0; j < M; ++j) {
      z[j] = pmul(p_sign, psub(ploadu<Packet>(xx + j * kWidth), p_shift));
      u[j] = pmax(pnegate(pabs(z[j])), lowest);  // NaN stays NaN (pmax keeps its first argument)
    }
    packet_math::exp_packets<M>(u, t);
    packet_math::log1p_and_inverse<M>(t, l, inv);
    for (int j = 0; j < M; ++j) {
      sp[j] = padd(pmax(z[j], zero), l[j]);
      sg[j] = pselect(pcmp_le(zero, z[j]), inv[j], pmul(t[j], inv[j]));
    }
  };
  Packet acc_sp = zero, acc_sg = zero;
  Index i = 0;
  for (; i + kGroup <= n; i += kGroup) {
    Packet sp[M], sg[M];
    terms(x + i, sp, sg);
    for (int j = 0; j < M; ++j) {
      acc_sp = padd(acc_sp, sp[j]);
      acc_sg = padd(acc_sg, sg[j]);
      Packet g = pmul(p_minus, sg[j]);
      if constexpr (Add) g = padd(g, ploadu<Packet>(d + i + j * kWidth));
      pstoreu(d + i + j * kWidth, g);
    }
  }
  double sum_sp = predux(acc_sp), sum_sg = predux(acc_sg);
  if (i < n) {
    alignas(64) double xb[kGroup], spb[kGroup], sgb[kGroup];
    for (Index j = 0; j < kGroup; ++j) xb[j] = i + j < n ? x[i + j] : shift;
    Packet sp[M], sg[M];
    terms(xb, sp, sg);
    for (int j = 0; j < M; ++j) {
      pstore(spb + j * kWidth, sp[j]);
      pstore(sgb + j * kWidth, sg[j]);
    }
    for (Index j = 0; j < n - i; ++j) {
      sum_sp += spb[j];
      sum_sg += sgb[j];
      const double g = -sign * sgb[j];
      d[i + j] = Add ? d[i + j] + g : g;
    }
  }
  return {sum_sp, sum_sg};
}

class OrderedLogistic final : public Kernel {
 public:
  OrderedLogistic(const Operand& y, Operand eta, Operand cuts) : eta_(std::move(eta)), cuts_(std::move(cuts)) {
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
    std::vector<Index> category(static_cast<size_t>(n_));
    offset_.assign(size_t(k_ + 2), 0);
    for (Index i = 0; i < n_; ++i) {
      const double v = y.data[i];  // a count (checked by the registry's support)
      if (v > double(k_))
        throw std::invalid_argument("input 'y' must be a category 0.." + std::to_string(k_) +
                                    " (C - 1 = the number of cutpoints), got " + format_number(v) + " at flat index " +
                                    std::to_string(i));
      category[size_t(i)] = Index(v);
      ++offset_[size_t(v) + 1];
    }
    // Rows by category (stable): category k is positions [offset_[k], offset_[k + 1]).
    for (Index k = 0; k <= k_; ++k) offset_[size_t(k + 1)] += offset_[size_t(k)];
    eta_index_.resize(size_t(n_));
    std::vector<Index> next(offset_.begin(), offset_.end() - 1);
    const bool eta_scalar = eta_.size() == 1;
    for (Index i = 0; i < n_; ++i)
      eta_index_[size_t(next[size_t(category[size_t(i)])]++)] = eta_scalar ? 0 : eta_.element(i);
    stride_ = (n_ + 7) / 8 * 8;
  }

  // eta by category, and its partials.
  Index scratch_size(Index, int) const override { return 2 * stride_; }

  void evaluate(const Batch& b) const override {
    double* const x = b.scratch;
    double* const d = b.scratch + stride_;
    for (Index s = 0; s < b.draws; ++s) {
      const double* eta = eta_.is_param ? b.value + s * b.ld + eta_.row : eta_.data.data();
      for (Index j = 0; j < n_; ++j) x[j] = eta[eta_index_[size_t(j)]];
      double lp = 0.0;
      for (Index k = 0; k <= k_; ++k) {
        const Index begin = offset_[size_t(k)], count = offset_[size_t(k + 1)] - begin;
        if (count == 0) continue;
        if (k > 0) {  // -log1p_exp(-a), a = eta - c_{k-1}
          const auto [sp, sg] = softplus_terms<false>(x + begin, count, cuts_.value(b, k - 1, s), -1.0, d + begin);
          lp -= sp;
          if (cuts_.is_param) cuts_.add_grad(b, k - 1, s, -sg);
        }
        if (k < k_) {  // -log1p_exp(b), b = eta - c_k
          const double c = cuts_.value(b, k, s);
          const auto [sp, sg] = k > 0 ? softplus_terms<true>(x + begin, count, c, 1.0, d + begin)
                                      : softplus_terms<false>(x + begin, count, c, 1.0, d + begin);
          lp -= sp;
          if (cuts_.is_param) cuts_.add_grad(b, k, s, sg);
        }
        if (k > 0 && k < k_) {  // L_k; NaN if the cutpoints are out of order
          const double gap = cuts_.value(b, k, s) - cuts_.value(b, k - 1, s);
          lp += double(count) * log1m_exp(-gap);
          if (cuts_.is_param) {
            const double q = double(count) / std::expm1(gap);
            cuts_.add_grad(b, k - 1, s, -q);
            cuts_.add_grad(b, k, s, q);
          }
        }
      }
      b.lp[s] += lp;
      if (eta_.is_param) {
        double* g = b.grad + s * b.ld + eta_.row;
        for (Index j = 0; j < n_; ++j) g[eta_index_[size_t(j)]] += d[j];
      }
    }
  }

 private:
  Operand eta_, cuts_;
  Index n_ = 0, k_ = 0, stride_ = 0;
  std::vector<Index> offset_;     // C + 1 = k_ + 2 run boundaries, by category
  std::vector<Index> eta_index_;  // eta's element for each row, rows sorted by category
};

}  // namespace

void register_ordered_logistic(KernelRegistry& r) {
  r.add({"ordered_logistic",
         "Ordered logistic: P(y <= k) = inv_logit(cutpoints[k] - eta) for y in {0, ..., C-1}",
         {{"y", Support::Count, true, std::nullopt, "category (N,) or (), data, from 0"},
          {"eta", Support::Real, false, std::nullopt, "linear predictor, y's shape or a scalar"},
          {"cutpoints", Support::Real, false, std::nullopt, "C - 1 increasing cutpoints (C-1,)"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<OrderedLogistic>(ops[0], std::move(ops[1]), std::move(ops[2]));
         }});
}

}  // namespace fastvi::kernels
