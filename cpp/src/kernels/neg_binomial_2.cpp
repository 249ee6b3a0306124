// neg_binomial_2(y | mu, phi) for integer y >= 0, mean mu and variance mu + mu^2 / phi (Stan's):
//   log p = lgamma(y + phi) - lgamma(phi) - lgamma(y + 1) + y log(mu / (mu + phi))
//           + phi log(phi / (mu + phi))
//         = R(phi, y) + y log(mu) - (y + phi) log1p(mu / phi) - lgamma(y + 1),
// with R(phi, y) = log(Gamma(phi + y) / (Gamma(phi) phi^y)) (special::LogRisingOverPower), which
// tends to 0 as phi grows: no term cancels, and phi -> infinity is the Poisson limit
// (y log(mu) - mu - lgamma(y + 1)) to rounding, where the textbook form loses lgamma(phi) ~ phi log phi.
//   d/dmu  = y / mu - (y + phi) / (mu + phi) = phi (y - mu) / (mu (mu + phi))
//   d/dphi = digamma(y + phi) - digamma(phi) - log1p(mu / phi) + (mu - y) / (mu + phi)
//
// neg_binomial_2_log(y | log_mu, phi): the same with mu = exp(log_mu), written in
// d = log_mu - log(phi) so that huge log_mu cannot overflow:
//   log p = R(phi, y) + y log_mu - (y + phi) log1p_exp(d) - lgamma(y + 1)
//   d/dlog_mu = y - (y + phi) inv_logit(d)
//   d/dphi    = digamma(y + phi) - digamma(phi) - log1p_exp(d) + inv_logit(d) - (y / phi) inv_logit(-d)
//
// A scalar phi parameter (one dispersion for every count, the usual regression) is its own
// kernel, PhiGroupedKernel: R(phi, y) and digamma(y + phi) - digamma(phi) depend on y only through
// its value, so their sums over the elements are taken over the distinct counts, each once, times
// its multiplicity (tabulated when the factor is built). Per element, one lgamma and one digamma
// difference per draw were most of the step (400 counts: 22 us, against 7 us with phi data).
#include <algorithm>
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

// PhiOutside: leave the R(phi, y) term and the digamma difference out, for PhiGroupedKernel to add
// (the element-wise part of that kernel).
template <bool PhiOutside>
struct NegBinomial2T {
  static constexpr const char* name = "neg_binomial_2";
  static constexpr const char* doc = "NegativeBinomial(y | mu, phi): mean mu, variance mu + mu^2 / phi, integer y >= 0";
  static constexpr Input inputs[] = {
      {"y", Support::Count, true, std::nullopt, "count"},
      {"mu", Support::Positive, false, std::nullopt, "mean"},
      {"phi", Support::Positive, false, std::nullopt, "precision (inverse overdispersion)"}};
  enum { kY, kMu, kPhi };
  using Derived = Derive<Of<kMu, Log>>;

  template <class Out, class Y, class Mu, class Phi, class LogMu>
  static void log_density(Out& out, const Y& y, const Mu& mu, const Phi& phi, const LogMu& log_mu) {
    if (auto lp = out.term(kY)) lp -= log_gamma(y + 1.0);
    if constexpr (!PhiOutside)
      if (auto lp = out.term(kPhi)) lp += special::map<special::LogRisingOverPower>(phi, y);
    if (auto lp = out.term(kMu)) lp += y * log_mu;
    const auto log1p_ratio = out.keep(log1p(mu / phi));
    out.lp(-(y + phi) * log1p_ratio);
    out.grad(kMu, phi * (y - mu) / (mu * (mu + phi)));
    if (out.param(kPhi)) {
      if constexpr (PhiOutside)
        out.grad(kPhi, (mu - y) / (mu + phi) - log1p_ratio);
      else
        out.grad(kPhi, special::map<special::DigammaDifference>(phi, y) - log1p_ratio + (mu - y) / (mu + phi));
    }
  }
};

template <bool PhiOutside>
struct NegBinomial2LogT {
  static constexpr const char* name = "neg_binomial_2_log";
  static constexpr const char* doc =
      "NegativeBinomial(y | exp(log_mu), phi): mean exp(log_mu), variance mu + mu^2 / phi, integer y >= 0";
  static constexpr Input inputs[] = {
      {"y", Support::Count, true, std::nullopt, "count"},
      {"log_mu", Support::Real, false, std::nullopt, "log of the mean"},
      {"phi", Support::Positive, false, std::nullopt, "precision (inverse overdispersion)"}};
  enum { kY, kLogMu, kPhi };
  using Derived = Derive<Of<kPhi, Log>>;

  template <class Out, class Y, class LogMu, class Phi, class LogPhi>
  static void log_density(Out& out, const Y& y, const LogMu& eta, const Phi& phi, const LogPhi& log_phi) {
    if (auto lp = out.term(kY)) lp -= log_gamma(y + 1.0);
    if constexpr (!PhiOutside)
      if (auto lp = out.term(kPhi)) lp += special::map<special::LogRisingOverPower>(phi, y);
    if (auto lp = out.term(kLogMu)) lp += y * eta;
    const auto d = out.keep(eta - log_phi);
    // log1p_exp(d), inv_logit(d) and inv_logit(-d) from one exp and one division: with
    // t = exp(-|d|) <= 1 and v = 1 / (1 + t), log1p_exp(d) = max(d, 0) + log1p(t), and the two
    // probabilities are v and t v, by the sign of d (three exps and divisions as separate calls).
    const auto t = out.keep(exp(-abs(d)));
    const auto v = out.keep(1.0 / (1.0 + t));
    const auto softplus = out.keep(max(d, 0.0) + log1p_nonneg(t));
    out.lp(-(y + phi) * softplus);
    const auto p = out.keep(if_nonneg(d, v, t * v));  // mu / (mu + phi)
    out.grad(kLogMu, y - (y + phi) * p);
    if (out.param(kPhi)) {
      const auto q = if_nonneg(d, t * v, v);  // phi / (mu + phi) = 1 - p, without the cancellation
      if constexpr (PhiOutside)
        out.grad(kPhi, p - softplus - y / phi * q);
      else
        out.grad(kPhi, special::map<special::DigammaDifference>(phi, y) - softplus + p - y / phi * q);
    }
  }
};

// sum_n R(phi, y_n) and sum_n (digamma(y_n + phi) - digamma(phi)) over the elements, by distinct
// count: the small counts by the exact recurrences
//   R(phi, v) = sum_{j < v} log1p(j / phi),   digamma(phi + v) - digamma(phi) = sum_{j < v} 1 / (phi + j)
// (positive terms: no cancellation, for every phi), accumulated up to the largest small count, the
// others each by the special functions (LogRisingOverPower, DigammaDifference). Which counts are
// small is chosen when the factor is built, to cost the least: running to v costs v steps of one
// log1p and two divisions, a count by the special functions about kSpecialCost such steps (two
// lgamma, two digamma). So large counts (a 10^6 among small ones) never make a long run.
class CountGroups {
 public:
  CountGroups(const Operand& y, Index size) {
    std::vector<double> v(static_cast<size_t>(size));
    for (Index n = 0; n < size; ++n) v[size_t(n)] = data_at(y, n);
    std::sort(v.begin(), v.end());
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j < v.size() && v[j] == v[i]) ++j;
      if (v[i] > 0) {  // R(phi, 0) = 0 and so is its digamma difference
        values_.push_back(v[i]);
        counts_.push_back(double(j - i));
      }
      i = j;
    }
    const size_t m = values_.size();
    double best = kSpecialCost * double(m);
    for (size_t k = 1; k <= m; ++k) {
      const double cost = values_[k - 1] + kSpecialCost * double(m - k);
      if (cost < best) {
        best = cost;
        small_ = k;
      }
    }
  }

  // Adds the sums at phi to lp and d_phi.
  void add(double phi, double& lp, double& d_phi) const {
    double r = 0.0, dd = 0.0, sum_r = 0.0, sum_dd = 0.0;
    double j = 0.0;
    for (size_t k = 0; k < small_; ++k) {
      for (; j < values_[k]; j += 1.0) {
        r += std::log1p(j / phi);
        dd += 1.0 / (phi + j);
      }
      sum_r += counts_[k] * r;
      sum_dd += counts_[k] * dd;
    }
    for (size_t k = small_; k < values_.size(); ++k) {
      sum_r += counts_[k] * special::LogRisingOverPower()(phi, values_[k]);
      sum_dd += counts_[k] * special::DigammaDifference()(phi, values_[k]);
    }
    lp += sum_r;
    d_phi += sum_dd;
  }

 private:
  static constexpr double kSpecialCost = 6.0;
  std::vector<double> values_, counts_;  // distinct positive counts, increasing, and how many of each
  size_t small_ = 0;                     // values_[0, small_) by the recurrences
};

// Dist<true> (the element-wise kernel without the phi-only terms) plus CountGroups, for a scalar
// phi parameter.
template <template <bool> class Dist>
class PhiGroupedKernel final : public Kernel {
 public:
  PhiGroupedKernel(std::vector<Operand> ops, Index size)
      : phi_(ops[size_t(Dist<true>::kPhi)]),
        groups_(ops[size_t(Dist<true>::kY)], size),
        inner_(ElementwiseKernel<Dist<true>>::create(std::move(ops), size)),
        size_(size) {}
  Index scratch_size(Index draws, int threads) const override { return inner_->scratch_size(draws, threads); }
  void evaluate(const Batch& b) const override {
    if (b.rows) {
      rows_->evaluate(b);
      return;
    }
    inner_->evaluate(b);
    for (Index s = 0; s < b.draws; ++s) groups_.add(phi_.scalar(b, s), b.lp[s], phi_.grad_scalar(b, s));
  }

  // Minibatches (rows=): the counts' groups are of every element, so a minibatch goes to the plain
  // element-wise kernel (every term per element) on the same operands, made when rows= asks.
  Index data_rows() const override { return rows_ ? rows_->data_rows() : 0; }
  Index subsample_scratch_size(Index draws, int threads, Index rows) const override {
    return rows_ ? rows_->subsample_scratch_size(draws, threads, rows) : 0;
  }
  bool set_data_rows(Index n) override {
    const auto& inner = static_cast<const ElementwiseKernel<Dist<true>>&>(*inner_);
    std::unique_ptr<Kernel> rows = ElementwiseKernel<Dist<false>>::create(inner.operands(), size_);
    if (!rows->set_data_rows(n)) return false;
    rows_ = std::move(rows);
    return true;
  }

 private:
  Operand phi_;
  CountGroups groups_;
  std::unique_ptr<Kernel> inner_;
  Index size_;
  std::unique_ptr<Kernel> rows_;  // the plain kernel for minibatches, if the factor is row-wise
};

// The registry entry of Plain (= Grouped but with every term), whose factory picks PhiGroupedKernel
// when phi is a scalar parameter.
template <template <bool> class Dist>
void register_grouped(KernelRegistry& r) {
  KernelInfo info = elementwise_kernel_info<Dist<false>>();
  info.factory = [](std::vector<Operand> ops, Index size) -> std::unique_ptr<Kernel> {
    const Operand& phi = ops.at(size_t(Dist<false>::kPhi));
    if (phi.is_param && phi.is_scalar()) return std::make_unique<PhiGroupedKernel<Dist>>(std::move(ops), size);
    return ElementwiseKernel<Dist<false>>::create(std::move(ops), size);
  };
  r.add(std::move(info));
}

}  // namespace

void register_neg_binomial_2(KernelRegistry& r) {
  register_grouped<NegBinomial2T>(r);
  register_grouped<NegBinomial2LogT>(r);
}

}  // namespace fastvi::kernels
