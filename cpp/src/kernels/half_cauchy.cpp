// half_cauchy(y | scale) for y >= 0, z = y / scale:  log p = log(2 / pi) - log(scale) - log1p(z^2)
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

class HalfCauchy final : public Kernel {
 public:
  HalfCauchy(std::vector<Operand> ops, Index size) : y_(std::move(ops[0])), scale_(std::move(ops[1])), size_(size) {
    const_lp_ = double(size_) * (math::kLog2 - math::kLogPi);
    if (!scale_.is_param) const_lp_ -= sum_data(size_, [&](Index n) { return std::log(data_at(scale_, n)); });
  }

  void evaluate(const Batch& b) const override {
    const bool dy = y_.is_param, dscale = scale_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double sigma = scale_.value(b, n, s);
        const double inv_sigma = 1.0 / sigma;
        const double z = y_.value(b, n, s) * inv_sigma;
        const double r = 1.0 / (1.0 + z * z);
        lp -= std::log1p(z * z);
        if (dscale) lp -= std::log(sigma);
        if (dy) y_.add_grad(b, n, s, -2.0 * z * r * inv_sigma);
        if (dscale) scale_.add_grad(b, n, s, (z * z - 1.0) * r * inv_sigma);
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, scale_;
  Index size_;
  double const_lp_ = 0.0;  // data-only terms, summed over the elements
};

}  // namespace

void register_half_cauchy(KernelRegistry& r) {
  r.add({"half_cauchy",
         "Half-Cauchy(y | scale) on y >= 0",
         {{"y", Support::NonNegative, false, std::nullopt, "variate"},
          {"scale", Support::Positive, false, 1.0, "scale (the median)"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<HalfCauchy>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
