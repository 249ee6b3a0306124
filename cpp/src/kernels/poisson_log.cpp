// poisson_log(y | log_rate) for integer y >= 0:  log p = y * log_rate - exp(log_rate) - lgamma(y + 1)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct PoissonLog {
  static constexpr const char* name = "poisson_log";
  static constexpr const char* doc = "Poisson(y | exp(log_rate)) for integer y >= 0";
  static constexpr Input inputs[] = {{"y", Support::Count, true, std::nullopt, "count"},
                                     {"log_rate", Support::Real, false, std::nullopt, "log of the rate (mean)"}};
  enum { kY, kLogRate };

  template <class Out, class Y, class LogRate>
  static void log_density(Out& out, const Y& y, const LogRate& eta) {
    if (auto lp = out.term(kY)) lp -= log_gamma(y + 1.0);
    const auto rate = out.keep(exp(eta));
    out.lp(y * eta - rate);
    out.grad(kLogRate, y - rate);
  }
};

}  // namespace

void register_poisson_log(KernelRegistry& r) { register_elementwise<PoissonLog>(r); }

}  // namespace fastvi::kernels
