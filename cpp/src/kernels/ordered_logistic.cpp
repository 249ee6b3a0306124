// ordered_logistic(y | eta, cutpoints) for y in {0, ..., C-1} (Stan's ordered_logistic_lpmf, with
// categories counted from 0), C - 1 increasing cutpoints c_0 < ... < c_{C-2}:
//
//   P(y = 0)     = 1 - inv_logit(eta - c_0)
//   P(y = k)     = inv_logit(eta - c_{k-1}) - inv_logit(eta - c_k),   0 < k < C-1
//   P(y = C - 1) = inv_logit(eta - c_{C-2})
//
// In logs, without cancellation (a = eta - c_{k-1} > b = eta - c_k):
//   log P(0)     = -log1p_exp(eta - c_0)
//   log P(C-1)   = -log1p_exp(c_{C-2} - eta)
//   log P(k)     = a + log1m_exp(b - a) - log1p_exp(a) - log1p_exp(b)
// and d log P(k) / d a = inv_logit'(a) / P(k), d / d b = -inv_logit'(b) / P(k), each formed from logs
// (inv_logit'(x) = exp(x - 2 log1p_exp(x))) so that a tiny P(k) gives a large, finite partial.
// eta has shape (N,) like y (or () for all outcomes); the cutpoints (C-1,), shared.
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

// log(1 - exp(x)) for x < 0 (Maechler's switch at -log 2).
inline double log1m_exp(double x) { return x > -math::kLog2 ? std::log(-std::expm1(x)) : std::log1p(-std::exp(x)); }

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
    const bool eta_scalar = eta_.size() == 1;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = 0.0;
      for (Index i = 0; i < n_; ++i) {
        const Index e = eta_scalar ? 0 : i;
        const double eta = eta_.value(b, e, s);
        const Index y = y_[size_t(i)];
        double d_eta = 0.0;
        if (y == 0) {
          const double x = eta - cuts_.value(b, 0, s);
          lp -= math::log1p_exp(x);
          d_eta = -math::inv_logit(x);
          if (cuts_.is_param) b.grad[s * b.ld + cuts_.row] -= d_eta;
        } else if (y == k_) {
          const double x = eta - cuts_.value(b, k_ - 1, s);
          lp -= math::log1p_exp(-x);
          d_eta = math::inv_logit(-x);
          if (cuts_.is_param) b.grad[s * b.ld + cuts_.row + k_ - 1] -= d_eta;
        } else {
          const double a = eta - cuts_.value(b, y - 1, s), c = eta - cuts_.value(b, y, s);
          const double la = math::log1p_exp(a), lc = math::log1p_exp(c);
          const double log_p = a + log1m_exp(c - a) - la - lc;  // NaN if cutpoints are out of order
          lp += log_p;
          const double da = std::exp(a - 2.0 * la - log_p), dc = -std::exp(c - 2.0 * lc - log_p);
          d_eta = da + dc;
          if (cuts_.is_param) {
            b.grad[s * b.ld + cuts_.row + y - 1] -= da;
            b.grad[s * b.ld + cuts_.row + y] -= dc;
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
