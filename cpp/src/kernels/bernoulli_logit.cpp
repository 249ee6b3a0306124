// bernoulli_logit(y | logit) for y in {0, 1}:  log p = y * logit - log(1 + exp(logit))
//   = -log1p_exp(u), u = (1 - 2y) * logit (= logit or -logit exactly), which keeps full relative
// precision when the outcome is nearly certain (no cancellation of two large terms). With
// t = exp(-|logit|), computed once: log1p_exp(u) = max(u, 0) + log1p(t), and
// d log p / d logit = y - inv_logit(logit) = y - (logit >= 0 ? 1 : t) / (1 + t).
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct BernoulliLogit {
  static constexpr const char* name = "bernoulli_logit";
  static constexpr const char* doc = "Bernoulli(y | inv_logit(logit)) for y in {0, 1}";
  static constexpr Input inputs[] = {{"y", Support::Binary, true, std::nullopt, "outcome, 0 or 1"},
                                     {"logit", Support::Real, false, std::nullopt, "log-odds of y = 1"}};
  enum { kY, kLogit };

  template <class Out, class Y, class Logit>
  static void log_density(Out& out, const Y& y, const Logit& eta) {
    const auto t = out.keep(exp(-abs(eta)));
    out.lp(-(max((1.0 - 2.0 * y) * eta, 0.0) + log1p_nonneg(t)));
    out.grad(kLogit, y - if_nonneg(eta, 1.0, t) / (1.0 + t));
  }
};

}  // namespace

void register_bernoulli_logit(KernelRegistry& r) { register_elementwise<BernoulliLogit>(r); }

}  // namespace fastvi::kernels
