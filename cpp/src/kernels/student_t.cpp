// student_t(y | df, loc, scale), z = (y - loc) / scale:
//   log p = lgamma((df + 1) / 2) - lgamma(df / 2) - log(df pi) / 2 - log(scale)
//           - (df + 1) / 2 * log1p(z^2 / df)
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

// The terms of log p that depend on df only.
double log_norm(double df) {
  return math::log_gamma(0.5 * (df + 1.0)) - math::log_gamma(0.5 * df) - 0.5 * (std::log(df) + math::kLogPi);
}

class StudentT final : public Kernel {
 public:
  StudentT(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), df_(std::move(ops[1])), loc_(std::move(ops[2])), scale_(std::move(ops[3])), size_(size) {
    if (!df_.is_param) const_lp_ += sum_data(size_, [&](Index n) { return log_norm(data_at(df_, n)); });
    if (!scale_.is_param) const_lp_ -= sum_data(size_, [&](Index n) { return std::log(data_at(scale_, n)); });
  }

  void evaluate(const Batch& b) const override {
    const bool dy = y_.is_param, ddf = df_.is_param, dloc = loc_.is_param, dscale = scale_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double df = df_.value(b, n, s), sigma = scale_.value(b, n, s);
        const double inv_sigma = 1.0 / sigma;
        const double z = (y_.value(b, n, s) - loc_.value(b, n, s)) * inv_sigma;
        const double z2 = z * z, log1p_t = std::log1p(z2 / df);
        lp -= 0.5 * (df + 1.0) * log1p_t;
        if (ddf) lp += log_norm(df);
        if (dscale) lp -= std::log(sigma);
        // (df + 1) / (df + z^2): the weight that makes the t score a down-weighted normal score.
        const double w = (df + 1.0) / (df + z2);
        if (dy) y_.add_grad(b, n, s, -w * z * inv_sigma);
        if (dloc) loc_.add_grad(b, n, s, w * z * inv_sigma);
        if (dscale) scale_.add_grad(b, n, s, (w * z2 - 1.0) * inv_sigma);
        if (ddf)
          df_.add_grad(b, n, s,
                       0.5 * (math::digamma(0.5 * (df + 1.0)) - math::digamma(0.5 * df) - log1p_t + (z2 - 1.0) / (df + z2)));
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, df_, loc_, scale_;
  Index size_;
  double const_lp_ = 0.0;  // data-only terms, summed over the elements
};

}  // namespace

void register_student_t(KernelRegistry& r) {
  r.add({"student_t",
         "Student-t(y | df, loc, scale)",
         {{"y", Support::Real, false, std::nullopt, "variate"},
          {"df", Support::Positive, false, std::nullopt, "degrees of freedom"},
          {"loc", Support::Real, false, 0.0, "location (the median)"},
          {"scale", Support::Positive, false, 1.0, "scale"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<StudentT>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
