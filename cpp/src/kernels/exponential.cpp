// exponential(y | rate) for y >= 0:  log p = log(rate) - rate * y
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Exponential {
  static constexpr const char* name = "exponential";
  static constexpr const char* doc = "Exponential(y | rate) on y >= 0";
  static constexpr Input inputs[] = {{"y", Support::NonNegative, false, std::nullopt, "variate"},
                                     {"rate", Support::Positive, false, 1.0, "rate (1 / mean)"}};
  enum { kY, kRate };

  template <class Out, class Y, class Rate>
  static void log_density(Out& out, const Y& y, const Rate& rate) {
    out.lp(-rate * y);
    if (auto lp = out.term(kRate)) lp += log(rate);
    out.grad(kY, -rate);
    out.grad(kRate, 1.0 / rate - y);
  }
};

}  // namespace

void register_exponential(KernelRegistry& r) { register_elementwise<Exponential>(r); }

}  // namespace fastvi::kernels
