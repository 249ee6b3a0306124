// beta_binomial(y | trials, a, b) for integers 0 <= y <= trials:
//   log p = log C(trials, y) + log B(y + a, trials - y + b) - log B(a, b)
//         = log C(trials, y) + R(a, y) + R(b, trials - y) - R(a + b, trials)
//           + y log(a / (a + b)) + (trials - y) log(b / (a + b)),
// with R(x, n) = log(Gamma(x + n) / (Gamma(x) x^n)) (special::LogRisingOverPower), which tends to
// 0 for large x: as a, b -> infinity with a / (a + b) fixed this is the binomial log density to
// rounding, where log B(y + a, ...) - log B(a, b) would cancel (log B(1e9, 1e9) ~ -1.4e9).
//   d/da = digamma(y + a) - digamma(a) - (digamma(trials + a + b) - digamma(a + b))
//   d/db = digamma(trials - y + b) - digamma(b) - (digamma(trials + a + b) - digamma(a + b))
// each difference by special::DigammaDifference.
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "fastvi/format.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct BetaBinomial {
  static constexpr const char* name = "beta_binomial";
  static constexpr const char* doc = "BetaBinomial(y | trials, a, b) for integers 0 <= y <= trials";
  static constexpr Input inputs[] = {
      {"y", Support::Count, true, std::nullopt, "number of successes"},
      {"trials", Support::Count, true, std::nullopt, "number of trials"},
      {"a", Support::Positive, false, std::nullopt, "first shape (alpha) of the beta prior"},
      {"b", Support::Positive, false, std::nullopt, "second shape (beta) of the beta prior"}};
  enum { kY, kTrials, kA, kB };
  using Derived = Derive<Of<kA, Log>, Of<kB, Log>>;

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

  template <class Out, class Y, class Trials, class A, class B, class LogA, class LogB>
  static void log_density(Out& out, const Y& y, const Trials& trials, const A& a, const B& b, const LogA& log_a,
                          const LogB& log_b) {
    if (auto lp = out.term(kY, kTrials))
      lp += log_gamma(trials + 1.0) - log_gamma(y + 1.0) - log_gamma(trials - y + 1.0);
    if (auto lp = out.term(kA)) lp += special::map<special::LogRisingOverPower>(a, y);
    if (auto lp = out.term(kB)) lp += special::map<special::LogRisingOverPower>(b, trials - y);
    const auto a_plus_b = out.keep(a + b);
    const auto log_a_plus_b = out.keep(log(a_plus_b));
    out.lp(y * (log_a - log_a_plus_b) + (trials - y) * (log_b - log_a_plus_b) -
           special::map<special::LogRisingOverPower>(a_plus_b, trials));
    if (out.param(kA) || out.param(kB)) {
      const auto total = out.keep(special::map<special::DigammaDifference>(a_plus_b, trials));
      if (out.param(kA)) out.grad(kA, special::map<special::DigammaDifference>(a, y) - total);
      if (out.param(kB)) out.grad(kB, special::map<special::DigammaDifference>(b, trials - y) - total);
    }
  }
};

}  // namespace

void register_beta_binomial(KernelRegistry& r) { register_elementwise<BetaBinomial>(r); }

}  // namespace fastvi::kernels
