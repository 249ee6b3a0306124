// beta(y | a, b) for 0 < y < 1:  log p = (a - 1) * log(y) + (b - 1) * log1p(-y) - log B(a, b)
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

double log_fn(double x) { return std::log(x); }
double log1m_fn(double x) { return std::log1p(-x); }

class Beta final : public Kernel {
 public:
  Beta(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), a_(std::move(ops[1])), b_(std::move(ops[2])), size_(size),
        log_y_(map_data(y_, log_fn)), log1m_y_(map_data(y_, log1m_fn)) {
    if (!a_.is_param && !b_.is_param)
      const_lp_ = -sum_data(size_, [&](Index n) { return math::log_beta(data_at(a_, n), data_at(b_, n)); });
  }

  void evaluate(const Batch& batch) const override {
    const bool dy = y_.is_param, da = a_.is_param, db = b_.is_param;
    for (Index s = 0; s < batch.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double alpha = a_.value(batch, n, s), beta = b_.value(batch, n, s);
        const double log_y = mapped(y_, log_y_, batch, n, s, log_fn);
        const double log1m_y = mapped(y_, log1m_y_, batch, n, s, log1m_fn);
        lp += (alpha - 1.0) * log_y + (beta - 1.0) * log1m_y;
        if (da || db) {
          lp -= math::log_beta(alpha, beta);
          const double psi_ab = math::digamma(alpha + beta);
          if (da) a_.add_grad(batch, n, s, log_y - math::digamma(alpha) + psi_ab);
          if (db) b_.add_grad(batch, n, s, log1m_y - math::digamma(beta) + psi_ab);
        }
        if (dy) {
          const double y = y_.value(batch, n, s);
          y_.add_grad(batch, n, s, (alpha - 1.0) / y - (beta - 1.0) / (1.0 - y));
        }
      }
      batch.lp[s] += lp;
    }
  }

 private:
  Operand y_, a_, b_;
  Index size_;
  Vector log_y_, log1m_y_;  // log(y) and log(1 - y) of data values (empty for a parameter)
  double const_lp_ = 0.0;   // data-only terms, summed over the elements
};

}  // namespace

void register_beta(KernelRegistry& r) {
  r.add({"beta",
         "Beta(y | a, b) on 0 < y < 1",
         {{"y", Support::UnitInterval, false, std::nullopt, "variate"},
          {"a", Support::Positive, false, std::nullopt, "first shape (alpha)"},
          {"b", Support::Positive, false, std::nullopt, "second shape (beta)"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<Beta>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
