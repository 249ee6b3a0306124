// lognormal(y | loc, scale) for y > 0, z = (log(y) - loc) / scale:
//   log p = -log(y) - log(scale) - log(sqrt(2 pi)) - z^2 / 2
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

double log_fn(double x) { return std::log(x); }

class Lognormal final : public Kernel {
 public:
  Lognormal(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), loc_(std::move(ops[1])), scale_(std::move(ops[2])), size_(size),
        log_y_(map_data(y_, log_fn)) {
    const_lp_ = -double(size_) * math::kHalfLog2Pi;
    if (!y_.is_param) const_lp_ -= sum_data(size_, [&](Index n) { return log_y_[y_.element(n)]; });
    if (!scale_.is_param) const_lp_ -= sum_data(size_, [&](Index n) { return std::log(data_at(scale_, n)); });
  }

  void evaluate(const Batch& b) const override {
    const bool dy = y_.is_param, dloc = loc_.is_param, dscale = scale_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double sigma = scale_.value(b, n, s);
        const double inv_sigma = 1.0 / sigma;
        const double log_y = mapped(y_, log_y_, b, n, s, log_fn);
        const double z = (log_y - loc_.value(b, n, s)) * inv_sigma;
        lp -= 0.5 * z * z;
        if (dscale) lp -= std::log(sigma);
        if (dy) {
          lp -= log_y;
          y_.add_grad(b, n, s, -(1.0 + z * inv_sigma) / y_.value(b, n, s));
        }
        if (dloc) loc_.add_grad(b, n, s, z * inv_sigma);
        if (dscale) scale_.add_grad(b, n, s, (z * z - 1.0) * inv_sigma);
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, loc_, scale_;
  Index size_;
  Vector log_y_;           // log of the data values of y (empty for a parameter)
  double const_lp_ = 0.0;  // data-only terms, summed over the elements
};

}  // namespace

void register_lognormal(KernelRegistry& r) {
  r.add({"lognormal",
         "Lognormal(y | loc, scale) on y > 0: log(y) ~ Normal(loc, scale)",
         {{"y", Support::Positive, false, std::nullopt, "variate"},
          {"loc", Support::Real, false, 0.0, "mean of log(y)"},
          {"scale", Support::Positive, false, 1.0, "standard deviation of log(y)"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<Lognormal>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
