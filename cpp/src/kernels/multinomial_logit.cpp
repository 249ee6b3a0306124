// multinomial_logit(y | gamma): counts y_c >= 0 over C categories with probabilities softmax(gamma)
// (Stan's multinomial_logit_lpmf), the categories on the last axis:
//
//   log p = lgamma(n + 1) - sum_c lgamma(y_c + 1) + sum_c y_c log_softmax(gamma)_c,  n = sum_c y_c
//   d/d gamma_c = y_c - n softmax(gamma)_c
//
// y has shape (C,) (one draw of the multinomial) or (N, C) (N independent rows); gamma (C,), shared
// by every row, or y's shape, one row each. The multinomial coefficients are data: summed once
// when the factor is built. For shared gamma the rows collapse to their column totals, so a draw
// costs one pass over C: sum_c Y_c gamma_c - n_total log_sum_exp(gamma). Categories with y_c = 0
// contribute nothing (also when gamma_c = -inf, where 0 * -inf would be NaN).
// Not element-wise (the categories axis is not broadcast), so the kernel checks shapes itself.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

class MultinomialLogit final : public Kernel {
 public:
  MultinomialLogit(const Operand& y, Operand gamma) : g_(std::move(gamma)) {
    if (y.shape.empty() || y.shape.size() > 2)
      throw std::invalid_argument("input 'y' must have shape (C,) or (N, C), got " + format_shape(y.shape));
    c_ = y.shape.back();
    rows_ = y.shape.size() == 2 ? y.shape[0] : 1;
    if (c_ < 2)
      throw std::invalid_argument("input 'y' needs at least 2 categories on its last axis, got " +
                                  format_shape(y.shape));
    if (g_.shape.size() == 1 && g_.shape[0] == c_)
      shared_ = true;
    else if (g_.shape != y.shape)
      throw std::invalid_argument("input 'gamma' must have shape (" + std::to_string(c_) + ",) or y's shape " +
                                  format_shape(y.shape) + ", got " + format_shape(g_.shape));
    y_ = y.data;  // non-negative integers (checked by the registry's support)
    totals_ = Vector::Zero(c_);
    row_n_ = Vector::Zero(rows_);
    for (Index i = 0; i < rows_; ++i) {
      double n = 0.0;
      for (Index k = 0; k < c_; ++k) {
        const double v = y_[i * c_ + k];
        n += v;
        totals_[k] += v;
        lp_const_ -= math::log_gamma(v + 1.0);
      }
      row_n_[i] = n;
      lp_const_ += math::log_gamma(n + 1.0);
    }
    n_total_ = row_n_.sum();
  }

  void evaluate(const Batch& b) const override {
    for (Index s = 0; s < b.draws; ++s) {
      double lp = lp_const_;
      if (shared_) {
        lp += row(b, s, 0, totals_.data(), n_total_);
      } else {
        for (Index i = 0; i < rows_; ++i) lp += row(b, s, i * c_, y_.data() + i * c_, row_n_[i]);
      }
      b.lp[s] += lp;
    }
  }

 private:
  // sum_c y_c log_softmax(gamma[base..base+C))_c for draw s, and its partials y - n softmax if
  // gamma is a parameter. Shifted by the row maximum (no overflow).
  double row(const Batch& b, Index s, Index base, const double* y, double n) const {
    if (n == 0.0) return 0.0;
    double m = -kInf;
    for (Index k = 0; k < c_; ++k) m = std::max(m, g_.value(b, base + k, s));
    if (!std::isfinite(m)) return m == -kInf ? -kInf : m - m;  // all -inf: p = 0; +inf or NaN: NaN
    double sum = 0.0, dot = 0.0;
    for (Index k = 0; k < c_; ++k) {
      const double x = g_.value(b, base + k, s) - m;
      sum += std::exp(x);
      if (y[k] != 0.0) dot += y[k] * x;
    }
    const double lse = std::log(sum);
    if (g_.is_param) {
      double* g = b.grad + s * b.ld + g_.row + base;
      for (Index k = 0; k < c_; ++k) g[k] += y[k] - n * std::exp(g_.value(b, base + k, s) - m - lse);
    }
    return dot - n * lse;
  }

  Operand g_;
  Index c_ = 0, rows_ = 1;
  bool shared_ = false;
  Vector y_, totals_, row_n_;
  double n_total_ = 0.0, lp_const_ = 0.0;
};

}  // namespace

void register_multinomial_logit(KernelRegistry& r) {
  r.add({"multinomial_logit",
         "Multinomial(y | sum(y), softmax(gamma)): counts y over C categories, the categories on the last axis",
         {{"y", Support::Count, true, std::nullopt, "counts (C,) or (N, C), data"},
          {"gamma", Support::Real, false, std::nullopt, "log-odds up to a constant, (C,) or y's shape"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<MultinomialLogit>(ops[0], std::move(ops[1]));
         }});
}

}  // namespace fastvi::kernels
