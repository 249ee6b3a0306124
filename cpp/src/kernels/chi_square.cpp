// chi_square(y | df) for y > 0:  log p = (df / 2 - 1) log(y) - y / 2 - (df / 2) log(2) - lgamma(df / 2)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct ChiSquare {
  static constexpr const char* name = "chi_square";
  static constexpr const char* doc = "ChiSquare(y | df) on y > 0";
  static constexpr Input inputs[] = {{"y", Support::Positive, false, std::nullopt, "variate"},
                                     {"df", Support::Positive, false, std::nullopt, "degrees of freedom"}};
  enum { kY, kDf };
  using Derived = Derive<Of<kY, Log>>;

  template <class Out, class Y, class Df, class LogY>
  static void log_density(Out& out, const Y& y, const Df& nu, const LogY& log_y) {
    const auto half = out.keep(0.5 * nu);
    out.lp((half - 1.0) * log_y);
    if (auto lp = out.term(kY)) lp -= 0.5 * y;
    if (auto lp = out.term(kDf)) lp -= half * math::kLog2 + log_gamma(half);
    out.grad(kY, (half - 1.0) / y - 0.5);
    if (out.param(kDf)) out.grad(kDf, 0.5 * (log_y - math::kLog2 - digamma(half)));
  }
};

}  // namespace

void register_chi_square(KernelRegistry& r) { register_elementwise<ChiSquare>(r); }

}  // namespace fastvi::kernels
