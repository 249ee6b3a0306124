// Categorical outcomes y_n in {0, ..., C-1} (Stan's categorical_logit_lpmf and categorical_lpmf,
// with categories counted from 0), the categories on the last axis of the second input:
//
//   categorical_logit(y | logits)   log p = logits[n, y_n] - log_sum_exp(logits[n, :])
//                                   d/d logits[n, c] = [c == y_n] - softmax(logits[n, :])_c
//   categorical(y | theta)          log p = log theta[n, y_n]   (theta[n, :] on the simplex)
//                                   d/d theta[n, c] = [c == y_n] / theta[n, c]
//
// y has shape (N,) (or () for one outcome); the second input (N, C), one row per outcome, or (C,),
// shared by every outcome. For shared logits the sum over outcomes collapses to the category
// counts: log p = sum_c count_c logits_c - N log_sum_exp(logits), one pass over C per draw.
// Not element-wise (the categories axis is not broadcast), so the kernels check shapes themselves.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/format.hpp"
#include "fastvi/kernel.hpp"

namespace fastvi::kernels {
namespace {

// Shapes and outcomes shared by both kernels: y (N,) or (), p (N, C) or (C,); y's values are
// categories of p's last axis. Throws naming the input at fault.
struct CategoricalLayout {
  Index n = 0;          // outcomes
  Index c = 0;          // categories
  bool shared = false;  // p is (C,): one row for every outcome
  std::vector<Index> y;
  Vector counts;  // outcomes per category (for shared rows)

  CategoricalLayout(const Operand& y_op, const Operand& p, const char* p_name) {
    if (y_op.shape.size() > 1)
      throw std::invalid_argument("input 'y' must have shape (N,) or (), got " + format_shape(y_op.shape));
    n = y_op.size();
    if (p.shape.empty() || p.shape.size() > 2)
      throw std::invalid_argument(std::string("input '") + p_name + "' must have shape (N, C) or (C,), got " +
                                  format_shape(p.shape));
    c = p.shape.back();
    shared = p.shape.size() == 1;
    if (c < 2)
      throw std::invalid_argument(std::string("input '") + p_name +
                                  "' needs at least 2 categories on its last axis, got " + format_shape(p.shape));
    if (!shared && p.shape[0] != n)
      throw std::invalid_argument(std::string("input '") + p_name + "' has " + std::to_string(p.shape[0]) +
                                  " rows but y has " + std::to_string(n) + " outcomes");
    y.resize(size_t(n));
    counts = Vector::Zero(c);
    for (Index i = 0; i < n; ++i) {
      const double v = y_op.data[i];  // a count (checked by the registry's support)
      if (v >= double(c))
        throw std::invalid_argument("input 'y' must be a category 0.." + std::to_string(c - 1) + " of input '" +
                                    p_name + "', got " + format_number(v) + " at flat index " + std::to_string(i));
      y[size_t(i)] = Index(v);
      counts[Index(v)] += 1.0;
    }
  }
};

class CategoricalLogit final : public Kernel {
 public:
  CategoricalLogit(const Operand& y, Operand logits) : layout_(y, logits, "logits"), p_(std::move(logits)) {}

  void evaluate(const Batch& b) const override {
    const Index c = layout_.c;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = 0.0;
      if (layout_.shared) {
        const double lse = log_sum_exp_row(b, s, 0);
        for (Index k = 0; k < c; ++k) lp += layout_.counts[k] * p_.value(b, k, s);
        lp -= double(layout_.n) * lse;
        if (p_.is_param) {
          double* g = b.grad + s * b.ld + p_.row;
          for (Index k = 0; k < c; ++k)
            g[k] += layout_.counts[k] - double(layout_.n) * std::exp(p_.value(b, k, s) - lse);
        }
      } else {
        for (Index i = 0; i < layout_.n; ++i) {
          const Index base = i * c, yi = layout_.y[size_t(i)];
          const double lse = log_sum_exp_row(b, s, base);
          lp += p_.value(b, base + yi, s) - lse;
          if (p_.is_param) {
            double* g = b.grad + s * b.ld + p_.row + base;
            for (Index k = 0; k < c; ++k) g[k] -= std::exp(p_.value(b, base + k, s) - lse);
            g[yi] += 1.0;
          }
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  // log_sum_exp of the C elements from `base` on, shifted by their maximum (no overflow; -inf
  // only if every element is -inf, NaN if any is NaN).
  double log_sum_exp_row(const Batch& b, Index s, Index base) const {
    double m = -kInf;
    for (Index k = 0; k < layout_.c; ++k) m = std::max(m, p_.value(b, base + k, s));
    if (!std::isfinite(m)) return m;
    double sum = 0.0;
    for (Index k = 0; k < layout_.c; ++k) sum += std::exp(p_.value(b, base + k, s) - m);
    return m + std::log(sum);
  }

  CategoricalLayout layout_;
  Operand p_;
};

class Categorical final : public Kernel {
 public:
  Categorical(const Operand& y, Operand theta) : layout_(y, theta, "theta"), p_(std::move(theta)) {
    if (!p_.is_param) check_simplex_rows();
  }

  void evaluate(const Batch& b) const override {
    const Index c = layout_.c;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = 0.0;
      if (layout_.shared) {
        for (Index k = 0; k < c; ++k)
          if (layout_.counts[k] > 0) {
            const double t = p_.value(b, k, s);
            lp += layout_.counts[k] * std::log(t);
            if (p_.is_param) b.grad[s * b.ld + p_.row + k] += layout_.counts[k] / t;
          }
      } else {
        for (Index i = 0; i < layout_.n; ++i) {
          const Index e = i * c + layout_.y[size_t(i)];
          const double t = p_.value(b, e, s);
          lp += std::log(t);
          if (p_.is_param) b.grad[s * b.ld + p_.row + e] += 1.0 / t;
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  // Data probabilities: each row sums to 1 (to 1e-8: rounding of a normalised row is far below).
  void check_simplex_rows() const {
    const Index rows = layout_.shared ? 1 : layout_.n;
    for (Index i = 0; i < rows; ++i) {
      double sum = 0.0;
      for (Index k = 0; k < layout_.c; ++k) sum += p_.data[i * layout_.c + k];
      if (!(std::abs(sum - 1.0) <= 1e-8))
        throw std::invalid_argument("input 'theta' must sum to 1 along its last axis, but row " + std::to_string(i) +
                                    " sums to " + format_number(sum));
    }
  }

  CategoricalLayout layout_;
  Operand p_;
};

}  // namespace

void register_categorical(KernelRegistry& r) {
  r.add({"categorical_logit",
         "Categorical(y | softmax(logits)) for y in {0, ..., C-1}, the categories on the last axis of logits",
         {{"y", Support::Count, true, std::nullopt, "category (N,) or (), data, from 0"},
          {"logits", Support::Real, false, std::nullopt, "log-odds up to a constant, (N, C) or (C,)"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<CategoricalLogit>(ops[0], std::move(ops[1]));
         }});
  r.add({"categorical",
         "Categorical(y | theta) for y in {0, ..., C-1}, theta's rows on the simplex (last axis)",
         {{"y", Support::Count, true, std::nullopt, "category (N,) or (), data, from 0"},
          {"theta", Support::NonNegative, false, std::nullopt, "probabilities, (N, C) or (C,), rows summing to 1"}},
         false,
         [](std::vector<Operand> ops, Index) -> std::unique_ptr<Kernel> {
           return std::make_unique<Categorical>(ops[0], std::move(ops[1]));
         }});
}

}  // namespace fastvi::kernels
