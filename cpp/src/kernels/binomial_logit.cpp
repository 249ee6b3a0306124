// binomial_logit(y | trials, logit) for integers 0 <= y <= trials:
//   log p = log C(trials, y) + y * log(p) + (trials - y) * log(1 - p),  p = inv_logit(logit),
// with log(p) = -log1p_exp(-logit) and log(1 - p) = -log1p_exp(logit) (no cancellation when p is
// close to 0 or 1).
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

double log_choose(double n, double k) {
  return math::log_gamma(n + 1.0) - math::log_gamma(k + 1.0) - math::log_gamma(n - k + 1.0);
}

double log_lik(double y, double trials, double logit) {
  // Skip a zero-count term: 0 * (-inf) would be NaN for an infinite logit.
  double lp = 0.0;
  if (y > 0) lp -= y * math::log1p_exp(-logit);
  if (trials > y) lp -= (trials - y) * math::log1p_exp(logit);
  return lp;
}

class BinomialLogit final : public Kernel {
 public:
  BinomialLogit(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), trials_(std::move(ops[1])), logit_(std::move(ops[2])), size_(size) {
    // The framework checked that y and trials are counts; y <= trials couples two inputs.
    for (Index n = 0; n < size_; ++n) {
      if (data_at(y_, n) > data_at(trials_, n)) {
        std::ostringstream msg;
        msg.precision(17);
        msg << "input 'y' must not exceed input 'trials', got y = " << data_at(y_, n)
            << " > trials = " << data_at(trials_, n) << " at flat index " << n << " of the broadcast inputs";
        throw std::invalid_argument(msg.str());
      }
    }
    const_lp_ = sum_data(size_, [&](Index n) { return log_choose(data_at(trials_, n), data_at(y_, n)); });
    if (!logit_.is_param)
      const_lp_ += sum_data(size_, [&](Index n) { return log_lik(data_at(y_, n), data_at(trials_, n), data_at(logit_, n)); });
  }

  void evaluate(const Batch& b) const override {
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      if (logit_.is_param) {
        for (Index n = 0; n < size_; ++n) {
          const double y = data_at(y_, n), trials = data_at(trials_, n), eta = logit_.value(b, n, s);
          lp += log_lik(y, trials, eta);
          logit_.add_grad(b, n, s, y - trials * math::inv_logit(eta));
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, trials_, logit_;  // y and trials are data (data_only)
  Index size_;
  double const_lp_ = 0.0;  // log C(trials, y), plus the rest when the logit is data
};

}  // namespace

void register_binomial_logit(KernelRegistry& r) {
  r.add({"binomial_logit",
         "Binomial(y | trials, inv_logit(logit)) for integers 0 <= y <= trials",
         {{"y", Support::Count, true, std::nullopt, "number of successes"},
          {"trials", Support::Count, true, std::nullopt, "number of trials"},
          {"logit", Support::Real, false, std::nullopt, "log-odds of success"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<BinomialLogit>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
