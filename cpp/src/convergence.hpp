// The stopping rule's parts (FitOptions in fit.hpp states the rule): the ELBO test on block means
// and medians, q's block means and log sds (drift, growing or shrinking scales), and the averaging
// phase's trend test that confirms a convergence. Used by run_fit (fit.cpp) only.
#pragma once

#include <string>
#include <vector>

#include "fastvi/family.hpp"
#include "fastvi/fit.hpp"
#include "fastvi/types.hpp"

namespace fastvi::convergence {

// The stopping rule's longer look back: the last block against the one kLongBlocks blocks before,
// where a slow steady climb has added up to kLongBlocks times its per-block size while the noise
// of a difference of two block means stays the same.
inline constexpr Index kLongBlocks = 4;
// q's scale along a coordinate is still moving while its block-mean log sd changed by more than
// kRiseThreshold the same way at each of the last kRiseBlocks block ends (and "keeps growing" if
// it rose). Measured on settled fits (posteriordb, with and without preconditioning): runs of
// changes > 0.01 reach 2 blocks with the full-rank family and up to 4 with the mean-field and
// low-rank ones, which therefore can delay their convergence by a block or two; an improper
// full-rank fit (a flat ridge) shows them at every block end, its sd growing like the step count.
inline constexpr double kRiseThreshold = 0.01;
inline constexpr int kRiseBlocks = 3;
// The averaging phase confirms convergence unless some coordinate's block means trend, over the
// phase, by more than kTailMeanLimit * max_drift of q's sd (mean) or kTailScaleLimit (log sd),
// with a slope kTailZ standard errors from zero.
inline constexpr double kTailMeanLimit = 2.0;
inline constexpr double kTailScaleLimit = 0.05;
inline constexpr double kTailZ = 4.0;

// Median of the first n elements of x (reordered in place).
double median_of_first(std::vector<double>& x, size_t n);

// The stopping rule's ELBO part (see fit.hpp): the mean ELBO of the last `block` windows against
// the mean of the `block` windows before, and against the block kLongBlocks blocks back.
struct ElboCheck {
  double diff = 0.0;         // recent block mean - the block mean before
  double diff_long = 0.0;    // recent block mean - the block mean kLongBlocks blocks back (0 if none)
  double improvement = 0.0;  // recent block mean - first window, if positive: the climb so far
  double se = 0.0;           // Monte Carlo standard error of a difference of two block means
  double se_line = 0.0, se_within = 0.0;
  double rate = 0.0;            // max(tol_abs, tol * improvement): the climb per block that counts as flat
  double window_scale = 0.0;    // robust sd of one window around the line (1.4826 MAD)
  bool settled_median = false;  // the block medians' version of the test passed
  bool settled = false;
  bool checked = false;  // a check ran
};

// The ELBO test on the window ELBOs so far (elbo) and their single-step variances (elbo_var);
// scratch holds at least 2 opt.block doubles.
ElboCheck check_elbo(const std::vector<double>& elbo, const std::vector<double>& elbo_var, const FitOptions& opt,
                     std::vector<double>& scratch);

// Block means of q's mean (over the block's steps) and of its log marginal sds (over the block's
// window ends), and how they changed from one block to the next, in units of q's sd: whether the
// fit's parameters are still moving although the ELBO looks flat, and whether some scale keeps
// growing (an improper or unidentified posterior: q spreads out along a direction where the log
// density is flat, and the entropy it gains keeps the ELBO rising slowly).
class BlockMonitor {
 public:
  explicit BlockMonitor(Index dim)
      : mu_sum_(Vector::Zero(dim)),
        ls_sum_(Vector::Zero(dim)),
        mu_prev_(dim),
        ls_prev_(dim),
        mu_(dim),
        ls_(dim),
        drift_(Vector::Zero(dim)),
        drift_prev_(Vector::Zero(dim)),
        scratch_(dim),
        run_(Eigen::VectorXi::Zero(dim)) {}

  void add_step(const Vector& phi) {
    mu_sum_ += phi.head(mu_sum_.size());
    ++mu_n_;
  }
  void add_window_end(const GaussianFamily& family, const Vector& phi) {
    family.log_marginal_sd(phi, scratch_);
    ls_sum_ += scratch_;
    ++ls_n_;
  }
  // Ends a block; from the second block on, drifting() and rising() compare it with the one before.
  void close_block(double rise_threshold) {
    if (mu_n_ == 0 || ls_n_ == 0) return;
    Vector& mu = mu_;  // into buffers sized once: no allocation in the loop
    Vector& ls = ls_;
    mu = mu_sum_ / double(mu_n_);
    ls = ls_sum_ / double(ls_n_);
    if (blocks_ > 0) {
      drift_prev_.swap(drift_);
      drift_ = (mu - mu_prev_).array() * (-ls.array()).exp();
      for (Index i = 0; i < ls.size(); ++i) {  // runs of rises (> 0) or of falls (< 0)
        const double change = ls(i) - ls_prev_(i);
        int& run = run_(i);
        run = change > rise_threshold ? std::max(run, 0) + 1 : change < -rise_threshold ? std::min(run, 0) - 1 : 0;
      }
    }
    mu_prev_.swap(mu);
    ls_prev_.swap(ls);
    mu_sum_.setZero();
    ls_sum_.setZero();
    mu_n_ = ls_n_ = 0;
    ++blocks_;
  }
  Index blocks() const { return blocks_; }
  // Coordinates whose block mean moved by more than `limit` of q's sd at each of the last two
  // block ends, the same way both times (a coordinate jittering back and forth by less is not
  // drifting), or by more than twice that at the last one, either way (an average of iterates that
  // jump by that much between blocks is off by a good part of an sd).
  // (Filled into `out`, whose capacity the caller reserved: no allocation in the loop.)
  void drifting(double limit, std::vector<Index>& out) const {
    out.clear();
    if (blocks_ < 2) return;
    for (Index i = 0; i < drift_.size(); ++i) {
      const bool steady = blocks_ >= 3 && drift_(i) * drift_prev_(i) > 0 &&
                          std::min(std::abs(drift_(i)), std::abs(drift_prev_(i))) > limit;
      if (steady || !(std::abs(drift_(i)) <= 2 * limit)) out.push_back(i);
    }
  }
  // Coordinates whose block-mean log sd rose by more than the threshold at each of the last
  // `runs` block ends (growing), or changed that much the same way each time (growing or shrinking).
  void rising(int runs, std::vector<Index>& out) const {
    out.clear();
    for (Index i = 0; i < run_.size(); ++i)
      if (run_(i) >= runs) out.push_back(i);
  }
  // Coordinates whose block-mean log sd fell by more than the threshold at each of the last `runs`
  // block ends: q collapsing onto a point (a funnel's neck, a mode where the log density is
  // unbounded), where its scale means nothing.
  void falling(int runs, std::vector<Index>& out) const {
    out.clear();
    for (Index i = 0; i < run_.size(); ++i)
      if (run_(i) <= -runs) out.push_back(i);
  }
  bool scale_moving(int runs) const { return run_.size() && run_.cwiseAbs().maxCoeff() >= runs; }
  // The means over the block closed last.
  const Vector& block_mean() const { return mu_prev_; }
  const Vector& block_log_sd() const { return ls_prev_; }

 private:
  Vector mu_sum_, ls_sum_, mu_prev_, ls_prev_, mu_, ls_, drift_, drift_prev_, scratch_;
  Eigen::VectorXi run_;
  Index mu_n_ = 0, ls_n_ = 0, blocks_ = 0;
};

// The averaging phase double-checks convergence: the per-coordinate least-squares trend of the
// block means of q's mean and log sd over the phase. A fit can look settled for a while on a
// plateau and then move on (the low-rank family's B turning slowly, say); over the thousands of
// steps of the averaging phase such a drift adds up to a trend well beyond the block means'
// scatter around it, while a settled fit's block means scatter around a flat line.
class TailTrend {
 public:
  // Every buffer sized here, so that a convergence in the middle of a fit allocates nothing.
  explicit TailTrend(Index dim) : mu0_(dim), ls0_(dim) { reset(dim); }
  void reset(Index dim) {
    n_ = 0;
    sk_ = skk_ = 0.0;
    for (auto* v : {&sx_mu_, &sxx_mu_, &skx_mu_, &sx_ls_, &sxx_ls_, &skx_ls_}) v->setZero(dim);
  }
  void add(const Vector& mu, const Vector& ls) {
    if (n_ == 0) {  // trends of x - (the first block's x): no cancellation when |x| >> its scatter
      mu0_ = mu;
      ls0_ = ls;
    }
    const double k = double(n_);
    accumulate(mu - mu0_, k, sx_mu_, sxx_mu_, skx_mu_);
    accumulate(ls - ls0_, k, sx_ls_, sxx_ls_, skx_ls_);
    sk_ += k;
    skk_ += k * k;
    ++n_;
  }
  Index blocks() const { return n_; }
  // Coordinates whose mean (in units of q's sd) or log sd changed over the phase, along the
  // fitted line, by more than `mean_limit` / `scale_limit`, with a slope more than `z` standard
  // errors from zero. Needs 4 blocks; none before.
  void moving(double mean_limit, double scale_limit, double z, std::vector<Index>& mean,
              std::vector<Index>& scale) const {
    mean.clear();
    scale.clear();
    if (n_ < 4) return;
    const double n = double(n_), skk = skk_ - sk_ * sk_ / n;
    auto trend = [&](double sx, double sxx, double skx, double unit, double limit) {
      const double sxy = skx - sk_ * sx / n, sx2 = sxx - sx * sx / n;
      const double slope = sxy / skk, rss = std::max(sx2 - slope * sxy, 0.0);
      const double se = std::sqrt(rss / (n - 2) / skk);
      return std::abs(slope) * (n - 1) > limit * unit && !(std::abs(slope) <= z * se);
    };
    for (Index i = 0; i < sx_mu_.size(); ++i) {
      const double log_sd = ls0_(i) + sx_ls_(i) / n;  // the phase's mean log sd
      if (trend(sx_mu_(i), sxx_mu_(i), skx_mu_(i), std::exp(log_sd), mean_limit)) mean.push_back(i);
      if (trend(sx_ls_(i), sxx_ls_(i), skx_ls_(i), 1.0, scale_limit)) scale.push_back(i);
    }
  }

 private:
  // x is an expression (x - x0): evaluated in place, no temporary vector.
  template <class X>
  static void accumulate(const Eigen::MatrixBase<X>& x, double k, Vector& sx, Vector& sxx, Vector& skx) {
    sx += x;
    sxx += x.cwiseProduct(x);
    skx += k * x;
  }
  Vector mu0_, ls0_, sx_mu_, sxx_mu_, skx_mu_, sx_ls_, sxx_ls_, skx_ls_;
  double sk_ = 0.0, skk_ = 0.0;
  Index n_ = 0;
};

// Whether the averaging phase confirms convergence; if not, says why.
bool confirm(const TailTrend& trend, const FitOptions& opt, std::string& why);

}  // namespace fastvi::convergence
