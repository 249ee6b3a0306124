// gamma(y | shape, rate) for y > 0:
//   log p = shape * log(rate) - lgamma(shape) + (shape - 1) * log(y) - rate * y
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

double log_fn(double x) { return std::log(x); }

class Gamma final : public Kernel {
 public:
  Gamma(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), shape_(std::move(ops[1])), rate_(std::move(ops[2])), size_(size),
        log_y_(map_data(y_, log_fn)), log_rate_(map_data(rate_, log_fn)) {
    if (!shape_.is_param) const_lp_ = -sum_data(size_, [&](Index n) { return math::log_gamma(data_at(shape_, n)); });
  }

  void evaluate(const Batch& b) const override {
    const bool dy = y_.is_param, dshape = shape_.is_param, drate = rate_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double y = y_.value(b, n, s), alpha = shape_.value(b, n, s), beta = rate_.value(b, n, s);
        const double log_y = mapped(y_, log_y_, b, n, s, log_fn);
        const double log_beta = mapped(rate_, log_rate_, b, n, s, log_fn);
        lp += alpha * log_beta + (alpha - 1.0) * log_y - beta * y;
        if (dshape) {
          lp -= math::log_gamma(alpha);
          shape_.add_grad(b, n, s, log_beta - math::digamma(alpha) + log_y);
        }
        if (dy) y_.add_grad(b, n, s, (alpha - 1.0) / y - beta);
        if (drate) rate_.add_grad(b, n, s, alpha / beta - y);
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, shape_, rate_;
  Index size_;
  Vector log_y_, log_rate_;  // log of the data values (empty for parameters)
  double const_lp_ = 0.0;    // data-only terms, summed over the elements
};

}  // namespace

void register_gamma(KernelRegistry& r) {
  r.add({"gamma",
         "Gamma(y | shape, rate) on y > 0",
         {{"y", Support::Positive, false, std::nullopt, "variate"},
          {"shape", Support::Positive, false, std::nullopt, "shape (alpha)"},
          {"rate", Support::Positive, false, std::nullopt, "rate (beta = 1 / scale)"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<Gamma>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
