// poisson(y | rate) for integer y >= 0:  log p = y * log(rate) - rate - lgamma(y + 1)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Poisson {
  static constexpr const char* name = "poisson";
  static constexpr const char* doc = "Poisson(y | rate) for integer y >= 0";
  static constexpr Input inputs[] = {{"y", Support::Count, true, std::nullopt, "count"},
                                     {"rate", Support::Positive, false, std::nullopt, "rate (the mean)"}};
  enum { kY, kRate };
  using Derived = Derive<Of<kRate, Log>>;

  template <class Out, class Y, class Rate, class LogRate>
  static void log_density(Out& out, const Y& y, const Rate& rate, const LogRate& log_rate) {
    if (auto lp = out.term(kY)) lp -= log_gamma(y + 1.0);
    out.lp(y * log_rate - rate);
    out.grad(kRate, y / rate - 1.0);
  }
};

}  // namespace

void register_poisson(KernelRegistry& r) { register_elementwise<Poisson>(r); }

}  // namespace fastvi::kernels
