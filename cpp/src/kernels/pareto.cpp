// pareto(y | y_min, alpha) for y >= y_min > 0:
//   log p = log(alpha) + alpha log(y_min) - (alpha + 1) log(y),   -inf for y < y_min
// (y_min and y data: checked when the factor is built; with either a parameter, a draw below the
// support has log density -inf, as in Stan, and the fit skips it).
#include <stdexcept>
#include <string>

#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "fastvi/format.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct Pareto {
  static constexpr const char* name = "pareto";
  static constexpr const char* doc = "Pareto(y | y_min, alpha) on y >= y_min";
  static constexpr Input inputs[] = {
      {"y", Support::Positive, false, std::nullopt, "variate"},
      {"y_min", Support::Positive, false, std::nullopt, "scale: the lower end of the support"},
      {"alpha", Support::Positive, false, std::nullopt, "shape (tail index)"}};
  enum { kY, kYMin, kAlpha };
  using Derived = Derive<Of<kY, Log>, Of<kYMin, Log>>;

  static void check(const std::vector<Operand>& ops, Index size) {
    if (ops[kY].is_param || ops[kYMin].is_param) return;
    for (Index n = 0; n < size; ++n) {
      const double y = data_at(ops[kY], n), y_min = data_at(ops[kYMin], n);
      if (y < y_min) {
        throw std::invalid_argument("input 'y' must be >= input 'y_min', got y = " + format_number(y) +
                                    " < y_min = " + format_number(y_min) + " at flat index " + std::to_string(n) +
                                    " of the broadcast inputs");
      }
    }
  }

  template <class Out, class Y, class YMin, class Alpha, class LogY, class LogYMin>
  static void log_density(Out& out, const Y& y, const YMin& y_min, const Alpha& alpha, const LogY& log_y,
                          const LogYMin& log_y_min) {
    out.lp(alpha * (log_y_min - log_y));
    if (auto lp = out.term(kY)) lp -= log_y;
    if (auto lp = out.term(kAlpha)) lp += log(alpha);
    if (auto lp = out.term(kY, kYMin)) lp += if_nonneg(y - y_min, 0.0, -kInf);
    out.grad(kY, -(alpha + 1.0) / y);
    out.grad(kYMin, alpha / y_min);
    out.grad(kAlpha, 1.0 / alpha + log_y_min - log_y);
  }
};

}  // namespace

void register_pareto(KernelRegistry& r) { register_elementwise<Pareto>(r); }

}  // namespace fastvi::kernels
