// normal(y | loc, scale) = -log(scale) - log(sqrt(2 pi)) - (y - loc)^2 / (2 scale^2)
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

double reciprocal(double x) { return 1.0 / x; }

class Normal final : public Kernel {
 public:
  Normal(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), loc_(std::move(ops[1])), scale_(std::move(ops[2])), size_(size),
        inv_scale_(map_data(scale_, reciprocal)) {
    // With a data scale, sum log(scale) once here instead of a log per element and draw.
    const_lp_ = -double(size_) * math::kHalfLog2Pi;
    if (!scale_.is_param) const_lp_ -= sum_data(size_, [&](Index n) { return std::log(data_at(scale_, n)); });
  }

  void evaluate(const Batch& b) override {
    const bool dy = y_.is_param, dloc = loc_.is_param, dscale = scale_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double inv_sigma = mapped(scale_, inv_scale_, b, n, s, reciprocal);
        const double z = (y_.value(b, n, s) - loc_.value(b, n, s)) * inv_sigma;
        lp -= 0.5 * z * z;
        if (dy) y_.add_grad(b, n, s, -z * inv_sigma);
        if (dloc) loc_.add_grad(b, n, s, z * inv_sigma);
        if (dscale) {
          lp += std::log(inv_sigma);
          scale_.add_grad(b, n, s, (z * z - 1.0) * inv_sigma);
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, loc_, scale_;
  Index size_;
  Vector inv_scale_;       // 1 / scale for a data scale (empty for a parameter)
  double const_lp_ = 0.0;  // data-only terms, summed over the elements
};

}  // namespace

void register_normal(KernelRegistry& r) {
  r.add({"normal",
         "Normal(y | loc, scale)",
         {{"y", Support::Real, false, std::nullopt, "variate"},
          {"loc", Support::Real, false, 0.0, "mean"},
          {"scale", Support::Positive, false, 1.0, "standard deviation"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<Normal>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
