// student_t(y | df, loc, scale), z = (y - loc) / scale:
//   log p = lgamma((df + 1) / 2) - lgamma(df / 2) - log(df pi) / 2 - log(scale)
//           - (df + 1) / 2 * log1p(z^2 / df)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct StudentT {
  static constexpr const char* name = "student_t";
  static constexpr const char* doc = "Student-t(y | df, loc, scale)";
  static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                     {"df", Support::Positive, false, std::nullopt, "degrees of freedom"},
                                     {"loc", Support::Real, false, 0.0, "location (the median)"},
                                     {"scale", Support::Positive, false, 1.0, "scale"}};
  enum { kY, kDf, kLoc, kScale };
  using Derived = Derive<Of<kScale, Inverse>>;

  template <class Out, class Y, class Df, class Loc, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Df& df, const Loc& loc, const Scale&, const InvScale& inv) {
    const auto z = out.keep((y - loc) * inv);
    const auto log1p_t = out.keep(log1p(square(z) / df));
    out.lp(-0.5 * (df + 1.0) * log1p_t);
    if (auto lp = out.term(kDf))
      lp += log_gamma(0.5 * (df + 1.0)) - log_gamma(0.5 * df) - 0.5 * (log(df) + math::kLogPi);
    if (auto lp = out.term(kScale)) lp += log(inv);
    // (df + 1) / (df + z^2): the weight that makes the t score a down-weighted normal score.
    const auto w = out.keep((df + 1.0) / (df + square(z)));
    out.grad(kY, -w * z * inv);
    out.grad(kLoc, w * z * inv);
    out.grad(kScale, (w * square(z) - 1.0) * inv);
    if (out.param(kDf))
      out.grad(kDf,
               0.5 * (digamma(0.5 * (df + 1.0)) - digamma(0.5 * df) - log1p_t + (square(z) - 1.0) / (df + square(z))));
  }
};

}  // namespace

void register_student_t(KernelRegistry& r) { register_elementwise<StudentT>(r); }

}  // namespace fastvi::kernels
