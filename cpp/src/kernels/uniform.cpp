// uniform(y | lower, upper) for lower <= y <= upper (Stan's closed interval):
//   log p = -log(upper - lower),   -inf outside
//   d/dy = 0,  d/dlower = 1 / (upper - lower),  d/dupper = -1 / (upper - lower)
// Data are checked when the factor is built (lower < upper, and y inside); with a parameter among
// them, a draw outside the support has log density -inf, as in Stan, and the fit skips it.
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "fastvi/format.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Uniform {
  static constexpr const char* name = "uniform";
  static constexpr const char* doc = "Uniform(y | lower, upper) on lower <= y <= upper";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                     {"lower", Support::Real, false, std::nullopt, "lower end of the support"},
                                     {"upper", Support::Real, false, std::nullopt, "upper end of the support"}};
  enum { kY, kLower, kUpper };

  static void check(const std::vector<Operand>& ops, Index size) {
    const auto fail = [](const std::string& what, Index n) {
      throw std::invalid_argument(what + " at flat index " + std::to_string(n) + " of the broadcast inputs");
    };
    const bool y = !ops[kY].is_param, lower = !ops[kLower].is_param, upper = !ops[kUpper].is_param;
    for (Index n = 0; n < size; ++n) {
      if (lower && upper && !(data_at(ops[kLower], n) < data_at(ops[kUpper], n)))
        fail("input 'lower' must be < input 'upper', got lower = " + format_number(data_at(ops[kLower], n)) +
                 " >= upper = " + format_number(data_at(ops[kUpper], n)),
             n);
      if (y && lower && data_at(ops[kY], n) < data_at(ops[kLower], n))
        fail("input 'y' must be >= input 'lower', got y = " + format_number(data_at(ops[kY], n)) +
                 " < lower = " + format_number(data_at(ops[kLower], n)),
             n);
      if (y && upper && data_at(ops[kY], n) > data_at(ops[kUpper], n))
        fail("input 'y' must be <= input 'upper', got y = " + format_number(data_at(ops[kY], n)) +
                 " > upper = " + format_number(data_at(ops[kUpper], n)),
             n);
    }
  }

  template <class Out, class Y, class Lower, class Upper>
  static void log_density(Out& out, const Y& y, const Lower& lower, const Upper& upper) {
    const auto width = out.keep(upper - lower);
    if (auto lp = out.term(kLower, kUpper)) lp -= log(width);
    // Outside the support (only possible with a parameter among the three): -inf.
    if (auto lp = out.term(kY, kLower, kUpper)) lp += if_nonneg(y - lower, if_nonneg(upper - y, 0.0, -kInf), -kInf);
    if (out.param(kLower) || out.param(kUpper)) {
      const auto inv = out.keep(1.0 / width);
      out.grad(kLower, inv);
      out.grad(kUpper, -inv);
    }
  }
};

}  // namespace

void register_uniform(KernelRegistry& r) { register_elementwise<Uniform>(r); }

}  // namespace fastvi::kernels
