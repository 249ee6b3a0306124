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
  }

  void evaluate(const Batch& b) override {
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
  Operand y_, logit_;  // y is data (data_only)
  Index size_;
  double const_lp_ = 0.0;
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
