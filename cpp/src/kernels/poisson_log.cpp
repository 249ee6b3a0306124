// poisson_log(y | log_rate) for integer y >= 0:  log p = y * log_rate - exp(log_rate) - lgamma(y + 1)
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

class PoissonLog final : public Kernel {
 public:
  PoissonLog(std::vector<Operand> ops, Index size) : y_(std::move(ops[0])), log_rate_(std::move(ops[1])), size_(size) {
    const_lp_ = -sum_data(size_, [&](Index n) { return math::log_gamma(data_at(y_, n) + 1.0); });
    // With the log rate as data there is no parameter: the whole log density is one constant.
    if (!log_rate_.is_param)
      const_lp_ += sum_data(size_, [&](Index n) {
        const double eta = data_at(log_rate_, n);
        return data_at(y_, n) * eta - std::exp(eta);
      });
    whole_draw_ = log_rate_.is_param && size_ >= kMinWholeDraw && y_.whole_draw() && log_rate_.whole_draw();
  }

  // The whole-draw path's column of one draw: exp(log_rate).
  Index scratch_size(Index, int) const override { return whole_draw_ ? size_ : 0; }

  void evaluate(const Batch& b) const override {
    if (whole_draw_) return evaluate_whole_draws(b);
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      if (log_rate_.is_param) {
        for (Index n = 0; n < size_; ++n) {
          const double y = data_at(y_, n), eta = log_rate_.value(b, n, s), rate = std::exp(eta);
          lp += y * eta - rate;
          log_rate_.add_grad(b, n, s, y - rate);
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  // The same, a draw at a time with Eigen arrays (out of line: see normal.cpp).
  [[gnu::noinline]] void evaluate_whole_draws(const Batch& b) const {
    for (Index s = 0; s < b.draws; ++s)
      with_draw(y_, b, s, size_, [&](const auto& y) {
        with_draw(log_rate_, b, s, size_, [&](const auto& eta) { b.lp[s] += const_lp_ + draw_terms(b, s, y, eta); });
      });
  }

  // Adds the gradient of draw s and returns its log density (without const_lp_), for Eigen arrays
  // y and eta (columns or constants).
  template <class Y, class Eta>
  double draw_terms(const Batch& b, Index s, const Y& y, const Eta& eta) const {
    Eigen::Map<Eigen::ArrayXd> rate(b.scratch, size_);
    rate = eta.exp();
    add_grad_draw(log_rate_, b, s, y - rate);
    return (y * eta - rate).sum();
  }

  Operand y_, log_rate_;  // y is data (data_only)
  Index size_;
  double const_lp_ = 0.0;  // -lgamma(y + 1), plus the rest when the log rate is data
  bool whole_draw_ = false;  // a parameter log rate, y and it contiguous or scalar (and enough elements)
};

}  // namespace

void register_poisson_log(KernelRegistry& r) {
  r.add({"poisson_log",
         "Poisson(y | exp(log_rate)) for integer y >= 0",
         {{"y", Support::Count, true, std::nullopt, "count"},
          {"log_rate", Support::Real, false, std::nullopt, "log of the rate (mean)"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<PoissonLog>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
