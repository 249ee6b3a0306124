// binomial_logit(y | trials, logit) for integers 0 <= y <= trials, p = inv_logit(logit):
//   log p = log C(trials, y) + y * log(p) + (trials - y) * log(1 - p)
// with log(p) = -log1p_exp(-logit) and log(1 - p) = -log1p_exp(logit), no cancellation when p is
// close to 0 or 1. With t = exp(-|logit|): log1p_exp(+-logit) = max(+-logit, 0) + log1p(t), and
// d log p / d logit = y - trials * inv_logit(logit) = y - trials * (logit >= 0 ? 1 : t) / (1 + t).
#include <string>
#include <stdexcept>

#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "fastvi/format.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct BinomialLogit {
  static constexpr const char* name = "binomial_logit";
  static constexpr const char* doc = "Binomial(y | trials, inv_logit(logit)) for integers 0 <= y <= trials";
  static constexpr Input inputs[] = {{"y", Support::Count, true, std::nullopt, "number of successes"},
                                     {"trials", Support::Count, true, std::nullopt, "number of trials"},
                                     {"logit", Support::Real, false, std::nullopt, "log-odds of success"}};
  enum { kY, kTrials, kLogit };

  // The framework checked that y and trials are counts; y <= trials couples two inputs.
  static void check(const std::vector<Operand>& ops, Index size) {
    for (Index n = 0; n < size; ++n) {
      const double y = data_at(ops[kY], n), trials = data_at(ops[kTrials], n);
      if (y > trials) {
        throw std::invalid_argument("input 'y' must not exceed input 'trials', got y = " + format_number(y) +
                                    " > trials = " + format_number(trials) + " at flat index " + std::to_string(n) +
                                    " of the broadcast inputs");
      }
    }
  }

  template <class Out, class Y, class Trials, class Logit>
  static void log_density(Out& out, const Y& y, const Trials& trials, const Logit& eta) {
    if (auto lp = out.term(kY, kTrials))
      lp += log_gamma(trials + 1.0) - log_gamma(y + 1.0) - log_gamma(trials - y + 1.0);
    const auto t = out.keep(exp(-abs(eta)));
    out.lp(-(trials * log1p_nonneg(t) + y * max(-eta, 0.0) + (trials - y) * max(eta, 0.0)));
    out.grad(kLogit, y - trials * if_nonneg(eta, 1.0, t) / (1.0 + t));
  }
};

}  // namespace

void register_binomial_logit(KernelRegistry& r) { register_elementwise<BinomialLogit>(r); }

}  // namespace fastvi::kernels
