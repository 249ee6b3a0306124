#include "fastvi/fit.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "fastvi/adam.hpp"

namespace fastvi {

void FitOptions::validate() const {
  auto fail = [](const std::string& what) { throw std::invalid_argument(what); };
  if (steps < 1) fail("steps must be >= 1, got " + std::to_string(steps));
  if (draws < 1) fail("draws must be >= 1, got " + std::to_string(draws));
  if (!(lr > 0) || !std::isfinite(lr)) fail("lr must be a positive finite number");
  if (!(beta1 >= 0 && beta1 < 1)) fail("beta1 must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) fail("beta2 must be in [0, 1)");
  if (!(adam_epsilon > 0)) fail("adam_epsilon must be > 0");
  if (eval_every < 1) fail("eval_every must be >= 1, got " + std::to_string(eval_every));
  if (std::isnan(tol)) fail("tol must not be NaN");
  if (patience < 1) fail("patience must be >= 1");
  if (block < 1) fail("block must be >= 1");
  if (std::isnan(tol_abs) || tol_abs < 0) fail("tol_abs must be >= 0");
  if (!(noise_z >= 0) || !std::isfinite(noise_z)) fail("noise_z must be a finite number >= 0");
  if (!(max_drift > 0) || !std::isfinite(max_drift)) fail("max_drift must be a positive finite number");
  if (average_draws < 0) fail("average_draws must be >= 0");
  if (threads < 1) fail("threads must be >= 1");
  if (!(refine_factor > 0 && refine_factor < 1)) fail("refine_factor must be in (0, 1)");
  if (refine_levels < 0) fail("refine_levels must be >= 0");
  if (!(precision > 0) || !std::isfinite(precision)) fail("precision must be a positive finite number");
}

namespace {

// The stopping rule's longer look back: the last block against the one kLongBlocks blocks before,
// where a slow steady climb has added up to kLongBlocks times its per-block size while the noise
// of a difference of two block means stays the same.
constexpr Index kLongBlocks = 4;
// q's scale along a coordinate is still moving while its block-mean log sd changed by more than
// kRiseThreshold the same way at each of the last kRiseBlocks block ends (and "keeps growing" if
// it rose). Measured on settled fits (posteriordb, with and without preconditioning): runs of
// changes > 0.01 reach 2 blocks with the full-rank family and up to 4 with the mean-field and
// low-rank ones, which therefore can delay their convergence by a block or two; an improper
// full-rank fit (a flat ridge) shows them at every block end, its sd growing like the step count.
constexpr double kRiseThreshold = 0.01;
constexpr int kRiseBlocks = 3;
// The averaging phase confirms convergence unless some coordinate's block means trend, over the
// phase, by more than kTailMeanLimit * max_drift of q's sd (mean) or kTailScaleLimit (log sd),
// with a slope kTailZ standard errors from zero.
constexpr double kTailMeanLimit = 2.0;
constexpr double kTailScaleLimit = 0.05;
constexpr double kTailZ = 4.0;

// After this many consecutive non-finite steps the fit returns to its last good checkpoint and
// halves the step size ...
constexpr Index kBadStepsBeforeBackoff = 5;
// ... and after this many halvings in all (the step size is then ~1e-9 of what was asked for),
// the fit gives up and says so.
constexpr Index kMaxBackoffs = 30;

// Divergence guard: the fit has diverged when, at kDivergeChecks block checks running, the median
// window ELBO of the last block lies below the best block's median by more than
// max(kDivergeNats, kDivergeScatter x the window scatter (1.4826 MAD) over the best block and the
// one before it). It then goes
// back to the iterate at the end of the best block and halves the step size (as after non-finite
// steps; the same kMaxBackoffs limit). Medians and MADs, not means and standard errors: in the
// failure this is for, the ELBO draws are heavy-tailed and their spread grows with the fall (full-
// rank q on a horseshoe or stochastic-volatility posterior: the gradient of q's scale arrives in
// rare huge bursts that Adam normalises away, the entropy's steady push wins, and q's scale random-
// walks up; the block medians went -308 -> -434 -> -1099 -> -8e5 -> -2e9 and q overflowed). A
// settled fit's block medians scatter by about 0.6 window sds around their mean, and the best of
// many lies ~2 above it: 20 is far outside that. (A threshold of 10 x one block's scatter
// fired on a settled 89-parameter hierarchical fit, whose best block had a scatter of 0.12 by chance.)
constexpr double kDivergeScatter = 20.0;
constexpr double kDivergeNats = 5.0;
constexpr int kDivergeChecks = 2;

// Median of the first n elements of x (reordered in place).
double median_of_first(std::vector<double>& x, size_t n) {
  const size_t h = n / 2;
  std::nth_element(x.begin(), x.begin() + std::ptrdiff_t(h), x.begin() + std::ptrdiff_t(n));
  const double upper = x[h];
  if (n % 2) return upper;
  return 0.5 * (upper + *std::max_element(x.begin(), x.begin() + std::ptrdiff_t(h)));
}

// Sums of the iterates over the current window and the two windows before it, so that a fit that
// never converged can still return the average over its last two complete windows.
struct WindowAverage {
  Vector current, last, before_last;
  Index n_current = 0, n_last = 0, n_before_last = 0;

  explicit WindowAverage(Index size)
      : current(Vector::Zero(size)), last(Vector::Zero(size)), before_last(Vector::Zero(size)) {}
  void add(const Vector& phi) {
    current += phi;
    ++n_current;
  }
  void close_window() {
    before_last.swap(last);
    last.swap(current);
    current.setZero();
    n_before_last = n_last;
    n_last = n_current;
    n_current = 0;
  }
  // Average over the last two complete windows. With fewer, the early transient would dominate
  // the average, so phi is left as the last iterate. Each window's iterates were aligned with its
  // first one, so the last window's sum is aligned with the one before it first.
  Index result(Vector& phi, GaussianFamily& family) const {
    if (n_last == 0 || n_before_last == 0) return 0;
    if (family.needs_alignment()) {
      Vector last_aligned = last;
      family.align(last_aligned, before_last);
      phi = (last_aligned + before_last) / double(n_last + n_before_last);
    } else {
      phi = (last + before_last) / double(n_last + n_before_last);
    }
    return n_last + n_before_last;
  }
};

std::string format_number(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", x);
  return buffer;
}

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

ElboCheck check_elbo(const std::vector<double>& elbo, const std::vector<double>& elbo_var, const FitOptions& opt,
                     std::vector<double>& scratch) {
  const size_t n = elbo.size(), b = size_t(opt.block), m = 2 * b;
  ElboCheck c;
  c.checked = true;
  double recent = 0.0, before = 0.0;
  for (size_t i = 0; i < b; ++i) {
    recent += elbo[n - 1 - i];
    before += elbo[n - 1 - b - i];
  }
  recent /= double(b);
  before /= double(b);
  c.diff = recent - before;
  c.improvement = std::max(recent - elbo.front(), 0.0);
  const size_t back = size_t(kLongBlocks) * b;
  if (n >= back + b) {
    double old = 0.0;
    for (size_t i = 0; i < b; ++i) old += elbo[n - 1 - back - i];
    c.diff_long = recent - old / double(b);
  }
  // Two estimates of the noise, each inflated by a trend in its own way, so the smaller is used:
  // (1) the windows' scatter around a straight line through the last 2b windows (a steady climb
  // is the line's slope, not noise; a curved one inflates it): with s^2 the residual variance of
  // one window, a difference of two means of b windows has variance 2 s^2 / b; (2) the scatter of
  // the single-step estimates within each window (a climb within a window inflates it).
  if (m > 2) {
    const double mid = 0.5 * double(m - 1);
    double mean = 0.0, sxx = 0.0, sxy = 0.0;
    for (size_t i = 0; i < m; ++i) mean += elbo[n - m + i];
    mean /= double(m);
    for (size_t i = 0; i < m; ++i) {
      const double x = double(i) - mid;
      sxx += x * x;
      sxy += x * (elbo[n - m + i] - mean);
    }
    const double slope = sxy / sxx;
    double rss = 0.0;
    for (size_t i = 0; i < m; ++i) {
      const double r = elbo[n - m + i] - mean - slope * (double(i) - mid);
      rss += r * r;
    }
    c.se_line = std::sqrt(rss / double(m - 2) * 2.0 / double(b));
    // The robust scale of one window: 1.4826 MAD of the residuals around the line.
    for (size_t i = 0; i < m; ++i) scratch[i] = std::abs(elbo[n - m + i] - mean - slope * (double(i) - mid));
    c.window_scale = 1.4826 * median_of_first(scratch, m);
  }
  double v = 0.0;
  for (size_t i = 0; i < m; ++i) v += elbo_var[n - m + i];
  c.se_within = std::sqrt(v) / double(b);
  c.se = m > 2 ? std::min(c.se_line, c.se_within) : c.se_within;
  c.rate = std::max(opt.tol_abs, opt.tol * c.improvement);
  const double noise = opt.noise_z * c.se;
  c.settled = std::abs(c.diff) < std::max(c.rate, noise) &&
              std::abs(c.diff_long) < std::max(double(kLongBlocks) * c.rate, noise);
  // The same test on block medians with a noise from the windows' MAD: when q is off in the tails
  // (k-hat ~0.7), single-step ELBOs are heavy-tailed, one outlying window moves a block mean by
  // several of its estimated standard errors, and the mean test alone never passed (an 89-parameter
  // varying-intercepts fit, full-rank: block medians flat to +-0.3 nats for 20,000 steps while the
  // block means kept "changing" by 1.6 nats against a noise of 0.29). A climb moves the medians as
  // it moves the means, so either test passing means flat. The sd of a median of b windows is about
  // 1.2533 sd / sqrt(b).
  if (m > 2 && n >= 2 * b) {
    const auto block_median = [&](size_t end) {  // median of the b windows before index `end`
      std::copy(elbo.begin() + std::ptrdiff_t(end - b), elbo.begin() + std::ptrdiff_t(end), scratch.begin());
      return median_of_first(scratch, b);
    };
    const double med_recent = block_median(n), med_before = block_median(n - b);
    const double med_old = n >= back + b ? block_median(n - back) : med_recent;
    const double robust_noise = opt.noise_z * 1.2533 * c.window_scale * std::sqrt(2.0 / double(b));
    c.settled_median = std::abs(med_recent - med_before) < std::max(c.rate, robust_noise) &&
                       std::abs(med_recent - med_old) < std::max(double(kLongBlocks) * c.rate, robust_noise);
    c.settled = c.settled || c.settled_median;
  }
  return c;
}

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
bool confirm(const TailTrend& trend, const FitOptions& opt, std::string& why) {
  std::vector<Index> mean, scale;
  trend.moving(kTailMeanLimit * opt.max_drift, kTailScaleLimit, kTailZ, mean, scale);
  if (mean.empty() && scale.empty()) return true;
  why = "after an apparent convergence, q's " +
        std::string(mean.empty()    ? "scale"
                    : scale.empty() ? "mean"
                                    : "mean and scale") +
        " kept moving along " + std::to_string(std::max(mean.size(), scale.size())) + " coordinate(s) over the " +
        std::to_string(trend.blocks() * opt.block * opt.eval_every) + " steps of averaging";
  return false;
}

}  // namespace

FitResult run_fit(Model& model, GaussianFamily& family, const Eigen::Ref<const Vector>& phi0, const FitOptions& opt,
                  const Monitor& monitor, const Preconditioner* preconditioner) {
  opt.validate();
  if (phi0.size() != family.num_params()) throw std::invalid_argument("initial parameters have the wrong length");
  if (!phi0.allFinite()) throw std::invalid_argument("initial parameters must be finite");

  ElboEstimator estimator(model, family, opt.draws, opt.gradient, preconditioner, opt.threads);
  Adam adam(family.num_params(), opt.beta1, opt.beta2, opt.adam_epsilon);
  FitResult r;
  r.phi = phi0;
  Vector grad(family.num_params());
  WindowAverage window_average(opt.average ? family.num_params() : 0);
  Vector tail_sum = Vector::Zero(opt.average ? family.num_params() : 0);  // after convergence
  Index tail_steps = 0, tail_target = 0;
  // Iterates are averaged as represented closest to a reference iterate, the first of their
  // window or of the tail phase (GaussianFamily::align; only for families that need it). Aligning
  // each iterate with the one before it instead would let the representation drift.
  const bool align = opt.average && family.needs_alignment();
  Vector window_reference = align ? r.phi : Vector(), tail_reference = window_reference;
  Vector window_aligned = window_reference, tail_aligned = window_reference;
  // Convergence is confirmed (or withdrawn) by the trend over the averaging phase.
  TailTrend tail_trend(family.dim());
  bool tail_complete = false;
  Index withdrawn = 0;  // convergences withdrawn after their averaging phase
  std::string withdrawn_why;
  BlockMonitor blocks(family.dim());
  // The ELBO history grows by one entry per window: reserved for the windows of up to a million
  // steps, grown (rarely, amortised) beyond. Reserving for `steps` itself would ask for terabytes
  // when a user passes steps=10**12 to mean "until converged".
  const Index max_windows = std::min<Index>(opt.steps / opt.eval_every + 1, 10000);
  r.elbo.reserve(size_t(max_windows));
  r.elbo_step.reserve(size_t(max_windows));

  double lr = opt.lr;
  // The iterate at the end of the last window with no bad step: where a fit that has wandered
  // into a region of non-finite log density goes back to.
  Vector checkpoint = r.phi;
  // The divergence guard's best block (its mean ELBO and the iterate at its end).
  Vector best_phi = r.phi;
  double best_median = -kInf, best_scatter = 0.0;
  int diverging = 0;
  std::vector<double> block_windows(size_t(2 * opt.block));  // scratch for medians: sized once
  bool keep_phi = false;                                     // return r.phi as it is (the best iterate), not an average
  Index window_bad = 0;
  double window_sum = 0.0, window_shift = 0.0, window_d = 0.0, window_d2 = 0.0;
  std::vector<double> elbo_var;  // per window: the variance of its mean ELBO, from its steps' scatter
  elbo_var.reserve(size_t(max_windows));
  Index window_good = 0, bad_run = 0, below_tol = 0, windows_since_check = 0;
  ElboCheck last_check;
  std::vector<Index> drifting, growing, shrinking;  // as of the last check
  drifting.reserve(size_t(family.dim()));
  growing.reserve(size_t(family.dim()));
  shrinking.reserve(size_t(family.dim()));
  using Clock = std::chrono::steady_clock;
  auto last_monitor = Clock::now();
  Progress progress;
  progress.total = opt.steps;
  bool stop = false;

  // Refinement levels (FitOptions::refine_factor): the average of the last completed level, and
  // its means and log sds in the model's unconstrained coordinates.
  const bool refine = opt.average && opt.tol > 0 && opt.refine_levels > 0;
  Index level_start = 0, level_steps = 0;
  Vector level_phi, level_mean, level_log_sd;
  bool have_level = false, refined = false, exhausted = false;
  auto measure = [&](const Vector& phi, Vector& mean, Vector& log_sd) {  // once per level: may allocate
    Vector p = phi;
    if (preconditioner && preconditioner->active()) family.unwhiten(p, *preconditioner);
    mean = p.head(family.dim());
    log_sd.resize(family.dim());
    family.log_marginal_sd(p, log_sd);
  };
  // The estimated remaining error of `phi` (a level's average) against the last level's; true
  // when within opt.precision.
  auto estimate_error = [&](const Vector& phi) {
    Vector mean, log_sd;
    measure(phi, mean, log_sd);
    const double f = opt.refine_factor / (1.0 - opt.refine_factor);
    r.error_mean = f * ((mean - level_mean).array().abs() * (-log_sd.array()).exp()).maxCoeff();
    r.error_scale = f * (log_sd - level_log_sd).cwiseAbs().maxCoeff();
    return r.error_mean <= opt.precision && r.error_scale <= opt.precision;
  };
  auto error_words = [&]() {
    return "estimated error of q's means " + format_number(r.error_mean) + " sd, of its log sds " +
           format_number(r.error_scale);
  };

  Index t = 0;
  for (; t < opt.steps && !stop; ++t) {
    double elbo = 0.0;
    if (estimator.estimate(r.phi, opt.seed, Stream::Optimise, std::uint64_t(t), grad, elbo, opt.threads)) {
      adam.step(r.phi, grad, lr);
      window_sum += elbo;
      if (window_good == 0) window_shift = elbo;
      window_d += elbo - window_shift;
      window_d2 += (elbo - window_shift) * (elbo - window_shift);
      ++window_good;
      bad_run = 0;
    } else {
      ++r.skipped;
      ++window_bad;
      if (++bad_run >= kBadStepsBeforeBackoff) {
        // Back to the last window without bad steps, or, if the ELBO had already fallen away from
        // its best (a divergence that ends in non-finite steps), to the best block's iterate.
        const bool fallen = !r.elbo.empty() && std::isfinite(best_median) &&
                            r.elbo.back() < best_median - std::max(kDivergeNats, kDivergeScatter * best_scatter);
        r.phi = fallen ? best_phi : checkpoint;
        if (fallen) adam.reset_momentum();
        lr *= 0.5;
        ++r.lr_reductions;
        bad_run = 0;
        if (r.lr_reductions >= kMaxBackoffs) {
          r.message = "stopped: the log density or its gradient kept being non-finite (" + std::to_string(r.skipped) +
                      " steps skipped, step size halved " + std::to_string(r.lr_reductions) +
                      " times); try a smaller lr or init_scale, or better initial values";
          r.converged = false;
          stop = true;
        }
      }
    }
    blocks.add_step(r.phi);
    if (opt.average) {
      // The windows' sums are kept in the averaging phase too: if the phase finds the fit still
      // moving, it is unconverged again and returns the average of its last two windows.
      if (align) {
        if (window_average.n_current == 0) window_reference = r.phi;
        window_aligned = r.phi;
        family.align(window_aligned, window_reference);
        if (r.converged) {
          if (tail_steps == 0) tail_reference = r.phi;
          tail_aligned = r.phi;
          family.align(tail_aligned, tail_reference);
        }
      }
      window_average.add(align ? window_aligned : r.phi);
      if (r.converged) {
        tail_sum += align ? tail_aligned : r.phi;
        if (++tail_steps >= tail_target) tail_complete = true;
      }
    }

    const bool window_end = (t + 1) % opt.eval_every == 0;
    if (window_end) {
      if (opt.average) window_average.close_window();
      adam.end_window();
      if (window_bad == 0) checkpoint = r.phi;
      window_bad = 0;
      if (window_good > 0) {
        const double e = window_sum / double(window_good);
        r.elbo.push_back(e);
        r.elbo_step.push_back(t + 1);
        const double n_good = double(window_good);
        elbo_var.push_back(
            window_good > 1 ? std::max(window_d2 - window_d * window_d / n_good, 0.0) / (n_good - 1) / n_good : 0.0);
        blocks.add_window_end(family, r.phi);
        if (Index(r.elbo.size()) % opt.block == 0) {
          blocks.close_block(kRiseThreshold);
          if (r.converged && tail_steps > 0) tail_trend.add(blocks.block_mean(), blocks.block_log_sd());
        }
        if (++windows_since_check >= opt.block && Index(r.elbo.size()) >= 2 * opt.block) {
          windows_since_check = 0;
          const ElboCheck c = check_elbo(r.elbo, elbo_var, opt, block_windows);
          last_check = c;
          blocks.drifting(opt.max_drift, drifting);
          blocks.rising(kRiseBlocks, growing);
          blocks.falling(kRiseBlocks, shrinking);
          below_tol = c.settled && drifting.empty() && !blocks.scale_moving(kRiseBlocks) ? below_tol + 1 : 0;
          // The divergence guard (see kDivergeScatter): median and scatter of the last block's windows.
          // (The scatter over the last two blocks' windows: a MAD of 5 values alone can be ~0 by chance.)
          std::copy(r.elbo.end() - opt.block, r.elbo.end(), block_windows.begin());
          const double median = median_of_first(block_windows, size_t(opt.block));
          std::copy(r.elbo.end() - 2 * opt.block, r.elbo.end(), block_windows.begin());
          const double median2 = median_of_first(block_windows, block_windows.size());
          for (double& w : block_windows) w = std::abs(w - median2);
          const double scatter = 1.4826 * median_of_first(block_windows, block_windows.size());
          if (!(median <= best_median)) {  // (also the first check)
            best_median = median;
            best_scatter = scatter;
            best_phi = r.phi;
            diverging = 0;
          } else if (best_median - median > std::max(kDivergeNats, kDivergeScatter * best_scatter)) {
            diverging += 1;
          } else {
            diverging = 0;
          }
          if (diverging >= kDivergeChecks) {
            diverging = 0;
            r.phi = best_phi;
            checkpoint = r.phi;
            lr *= 0.5;
            adam.reset_momentum();
            ++r.lr_reductions;
            ++r.divergences;
            below_tol = 0;
            if (r.converged) {  // a converged fit that then diverged was not converged
              r.converged = false;
              r.converged_step = -1;
              r.message.clear();
              tail_steps = 0;
              tail_sum.setZero();
            }
            if (r.lr_reductions >= kMaxBackoffs) {
              r.message = "stopped: the ELBO kept falling away from its best (step size halved " +
                          std::to_string(r.lr_reductions) + " times); q is the iterate at the best ELBO";
              stop = keep_phi = true;
            }
          }
        }
        if (opt.tol > 0 && !r.converged && below_tol >= opt.patience) {
          r.converged = true;
          r.converged_step = t + 1;
          r.message = "converged: the ELBO averaged over blocks of " + std::to_string(opt.block * opt.eval_every) +
                      " steps changed by less than max(tol_abs, tol * improvement) or its Monte Carlo noise, and "
                      "q's means and scales stopped moving, " +
                      std::to_string(opt.patience) + " times running" +
                      (withdrawn > 0 ? " (" + std::to_string(withdrawn) +
                                           " earlier convergence(s) withdrawn: " + withdrawn_why + ")"
                                     : "");
          tail_target = std::max(t + 1 - level_start, (opt.average_draws + opt.draws - 1) / opt.draws);
          tail_steps = 0;
          tail_sum.setZero();
          tail_trend.reset(family.dim());
          if (!opt.average) stop = true;
        }
      }
      window_sum = window_d = window_d2 = 0.0;
      window_good = 0;
    }
    if (tail_complete) {
      tail_complete = false;
      if (!confirm(tail_trend, opt, withdrawn_why)) {
        ++withdrawn;  // still moving: unconverged again, and the rule starts over
        r.converged = false;
        r.converged_step = -1;
        r.message.clear();
        below_tol = 0;
        tail_steps = 0;
      } else if (!refine) {
        stop = true;
      } else {
        const Vector average = tail_sum / double(tail_steps);
        if (have_level && estimate_error(average)) {
          refined = stop = true;
          r.message += "; refined " + std::to_string(r.refinements) + " time(s), to step size " + format_number(lr) +
                       ": " + error_words();
        } else if (r.refinements >= opt.refine_levels) {
          stop = exhausted = true;
          r.converged = false;
          r.converged_step = -1;
          r.message = "not converged to the requested precision: after " + std::to_string(r.refinements) +
                      " step-size refinement(s) the averaged q still moved between step sizes (" + error_words() +
                      ", precision " + format_number(opt.precision) + "); try more draws or steps";
        } else {  // the next level: from this level's average, with a smaller step size
          level_phi = average;
          level_steps = tail_steps;
          measure(level_phi, level_mean, level_log_sd);
          have_level = true;
          r.phi = level_phi;
          checkpoint = r.phi;
          lr *= opt.refine_factor;
          adam.reset_momentum();
          ++r.refinements;
          level_start = t + 1;
          r.converged = false;
          r.converged_step = -1;
          r.message.clear();
          below_tol = 0;
          tail_steps = 0;
          tail_sum.setZero();
        }
      }
    }
    if (monitor && (window_end || Clock::now() - last_monitor > std::chrono::duration<double>(opt.monitor_seconds))) {
      progress.step = t + 1;
      progress.elbo = r.elbo.empty() ? kNaN : r.elbo.back();
      progress.skipped = r.skipped;
      last_monitor = Clock::now();
      if (!monitor(progress)) {
        r.interrupted = true;
        r.message = "interrupted after " + std::to_string(t + 1) + " steps";
        stop = true;
      }
    }
  }
  r.steps = t;
  // Out of steps (or interrupted) during the averaging phase: judge the part that ran.
  if (r.converged && tail_steps < tail_target && !confirm(tail_trend, opt, withdrawn_why)) {
    ++withdrawn;
    r.converged = false;
    r.converged_step = -1;
    if (!r.interrupted) r.message.clear();
    tail_steps = 0;
  }
  // Refinement cut short by the step limit (or an interruption).
  if (refine && !refined && !exhausted) {
    if (r.converged) {
      if (have_level && tail_steps > 0 && estimate_error(tail_sum / double(tail_steps))) {
        r.message += "; refined " + std::to_string(r.refinements) + " time(s), to step size " + format_number(lr) +
                     ": " + error_words() + " (from an averaging phase cut short after " + std::to_string(tail_steps) +
                     " steps)";
      } else {
        r.converged = false;
        r.converged_step = -1;
        if (!r.interrupted) {
          r.message = have_level ? "ran out of steps while refining the step size (" + error_words() + ", precision " +
                                       format_number(opt.precision) + ")"
                                 : "q became stationary, but the steps ran out before the step-size refinement that "
                                   "bounds its error; raise steps";
        }
      }
    } else if (have_level && r.message.empty()) {
      r.message = "ran out of steps while refining, at step size " + format_number(lr) + " (refinement " +
                  std::to_string(r.refinements) + "): q is the average at step size " +
                  format_number(lr / opt.refine_factor);
    }
  }
  if (r.message.empty()) {
    r.message = "reached the maximum number of steps without meeting the tolerance";
    if (last_check.checked) {  // say what was still moving at the last check
      std::string why;
      auto add = [&why](const std::string& part) { why += (why.empty() ? "" : "; ") + part; };
      if (!last_check.settled) {
        const bool short_term = std::abs(last_check.diff) >= std::max(last_check.rate, opt.noise_z * last_check.se);
        const Index span = (short_term ? 1 : kLongBlocks) * opt.block * opt.eval_every;
        add("the ELBO still changed by " + format_number(short_term ? last_check.diff : last_check.diff_long) +
            " nats over " + std::to_string(span) + " steps, Monte Carlo noise " + format_number(last_check.se));
      }
      if (!drifting.empty()) add("q's mean still moving along " + std::to_string(drifting.size()) + " coordinate(s)");
      if (!growing.empty()) add("q's scale still growing along " + std::to_string(growing.size()) + " coordinate(s)");
      if (!shrinking.empty())
        add("q's scale still shrinking along " + std::to_string(shrinking.size()) + " coordinate(s)");
      if (withdrawn > 0) add(withdrawn_why);
      if (!why.empty()) r.message += " (" + why + ")";
    }
  }
  if (!r.converged) {
    r.drifting = drifting;
    r.growing = growing;
    r.shrinking = shrinking;
  }
  if (opt.average && !keep_phi) {
    if (tail_steps > 0) {
      r.phi = tail_sum / double(tail_steps);
      r.averaged_steps = tail_steps;
    } else if (have_level) {  // the refinement did not complete a level: the last level's average
      r.phi = level_phi;
      r.averaged_steps = level_steps;
    } else {
      r.averaged_steps = window_average.result(r.phi, family);
    }
  }
  r.final_lr = lr;
  if (preconditioner && preconditioner->active()) family.unwhiten(r.phi, *preconditioner);
  r.log_sd.resize(family.dim());
  family.log_marginal_sd(r.phi, r.log_sd);
  if (!r.phi.allFinite() || !r.log_sd.allFinite()) {
    // Adam moves every coordinate by at most ~lr per step, so this takes an absurd scale (an
    // improper posterior run for very long, or a preconditioner with a huge scale): say so.
    r.converged = false;
    r.converged_step = -1;
    r.message = "the fitted parameters are not finite (q's mean or scale overflowed); " + r.message;
  }
  return r;
}

}  // namespace fastvi
