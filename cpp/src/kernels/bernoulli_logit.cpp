// bernoulli_logit(y | logit) for y in {0, 1}:  log p = y * logit - log(1 + exp(logit)),
// evaluated as -log1p_exp(-logit) for y = 1 and -log1p_exp(logit) for y = 0, which keeps full
// relative precision when the outcome is nearly certain (no cancellation of two large terms).
#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

double log_pmf(double y, double logit) { return -math::log1p_exp((1.0 - 2.0 * y) * logit); }

class BernoulliLogit final : public Kernel {
 public:
  BernoulliLogit(std::vector<Operand> ops, Index size) : y_(std::move(ops[0])), logit_(std::move(ops[1])), size_(size) {
    // With the logit as data there is no parameter: the whole log density is one constant.
    if (!logit_.is_param) const_lp_ = sum_data(size_, [&](Index n) { return log_pmf(data_at(y_, n), data_at(logit_, n)); });
    whole_draw_ = logit_.is_param && size_ >= kMinWholeDraw && y_.whole_draw() && logit_.whole_draw();
  }

  // The whole-draw path's column of one draw: exp(-|logit|), then d lp / d logit.
  Index scratch_size(Index, int) const override { return whole_draw_ ? size_ : 0; }

  void evaluate(const Batch& b) const override {
    if (whole_draw_) return evaluate_whole_draws(b);
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      if (logit_.is_param) {
        for (Index n = 0; n < size_; ++n) {
          const double y = data_at(y_, n), eta = logit_.value(b, n, s);
          lp += log_pmf(y, eta);
          logit_.add_grad(b, n, s, y - math::inv_logit(eta));
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  // The same, a draw at a time with Eigen arrays (out of line: see normal.cpp).
  [[gnu::noinline]] void evaluate_whole_draws(const Batch& b) const {
    for (Index s = 0; s < b.draws; ++s)
      with_draw(y_, b, s, size_, [&](const auto& y) {
        with_draw(logit_, b, s, size_, [&](const auto& eta) { b.lp[s] += draw_terms(b, s, y, eta); });
      });
  }

  // Adds the gradient of draw s and returns its log density, for Eigen arrays y and eta (columns
  // or constants). With u = (1 - 2y) eta (= eta or -eta exactly) and t = exp(-|eta|), computed once:
  //   log p = -log1p_exp(u) = -(max(u, 0) + log1p(t)),
  //   d log p / d eta = y - inv_logit(eta) = y - (eta >= 0 ? 1 : t) / (1 + t).
  template <class Y, class Eta>
  double draw_terms(const Batch& b, Index s, const Y& y, const Eta& eta) const {
    Eigen::Map<Eigen::ArrayXd> t(b.scratch, size_);
    t = (-eta.abs()).exp();
    const double lp = -(((1.0 - 2.0 * y) * eta).max(0.0) + math::log1p_nonneg(t)).sum();
    // A plain loop (which the compiler vectorises): Eigen 3.4 does not vectorise select().
    for (Index n = 0; n < size_; ++n) t[n] = y(n) - (eta(n) >= 0.0 ? 1.0 : t[n]) / (1.0 + t[n]);
    add_grad_draw(logit_, b, s, t);
    return lp;
  }

  Operand y_, logit_;  // y is data (data_only)
  Index size_;
  double const_lp_ = 0.0;
  bool whole_draw_ = false;  // a parameter logit, y and logit contiguous or scalar (and enough elements)
};

}  // namespace

void register_bernoulli_logit(KernelRegistry& r) {
  r.add({"bernoulli_logit",
         "Bernoulli(y | inv_logit(logit)) for y in {0, 1}",
         {{"y", Support::Binary, true, std::nullopt, "outcome, 0 or 1"},
          {"logit", Support::Real, false, std::nullopt, "log-odds of y = 1"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<BernoulliLogit>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
