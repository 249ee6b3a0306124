// exponential(y | rate) for y >= 0:  log p = log(rate) - rate * y
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"

namespace fastvi::kernels {
namespace {

class Exponential final : public Kernel {
 public:
  Exponential(std::vector<Operand> ops, Index size) : y_(std::move(ops[0])), rate_(std::move(ops[1])), size_(size) {
    if (!rate_.is_param) const_lp_ = sum_data(size_, [&](Index n) { return std::log(data_at(rate_, n)); });
  }

  void evaluate(const Batch& b) const override {
    const bool dy = y_.is_param, drate = rate_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double lambda = rate_.value(b, n, s), y = y_.value(b, n, s);
        lp -= lambda * y;
        if (drate) {
          lp += std::log(lambda);
          rate_.add_grad(b, n, s, 1.0 / lambda - y);
        }
        if (dy) y_.add_grad(b, n, s, -lambda);
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, rate_;
  Index size_;
  double const_lp_ = 0.0;  // data-only terms, summed over the elements
};

}  // namespace

void register_exponential(KernelRegistry& r) {
  r.add({"exponential",
         "Exponential(y | rate) on y >= 0",
         {{"y", Support::NonNegative, false, std::nullopt, "variate"},
          {"rate", Support::Positive, false, 1.0, "rate (1 / mean)"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<Exponential>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
