// beta(y | a, b) for 0 < y < 1:  log p = (a - 1) * log(y) + (b - 1) * log1p(-y) - log B(a, b)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Beta {
  static constexpr const char* name = "beta";
  static constexpr const char* doc = "Beta(y | a, b) on 0 < y < 1";
  static constexpr Input inputs[] = {{"y", Support::UnitInterval, false, std::nullopt, "variate"},
                                     {"a", Support::Positive, false, std::nullopt, "first shape (alpha)"},
                                     {"b", Support::Positive, false, std::nullopt, "second shape (beta)"}};
  enum { kY, kA, kB };
  using Derived = Derive<Of<kY, Log>, Of<kY, Log1m>>;

  template <class Out, class Y, class A, class B, class LogY, class Log1mY>
  static void log_density(Out& out, const Y& y, const A& a, const B& b, const LogY& log_y, const Log1mY& log1m_y) {
    out.lp((a - 1.0) * log_y + (b - 1.0) * log1m_y);
    if (auto lp = out.term(kA, kB)) lp -= log_beta(a, b);
    out.grad(kY, (a - 1.0) / y - (b - 1.0) / (1.0 - y));
    if (out.param(kA) || out.param(kB)) {
      const auto psi_ab = out.keep(digamma(a + b));
      out.grad(kA, log_y - digamma(a) + psi_ab);
      out.grad(kB, log1m_y - digamma(b) + psi_ab);
    }
  }
};

}  // namespace

void register_beta(KernelRegistry& r) { register_elementwise<Beta>(r); }

}  // namespace fastvi::kernels
