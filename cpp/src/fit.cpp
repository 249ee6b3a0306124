#include "fastvi/fit.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "convergence.hpp"
#include "fastvi/adam.hpp"
#include "fastvi/format.hpp"

namespace fastvi {

using namespace convergence;

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
  if (batch_size < 0) fail("batch_size must be >= 0 (0: every row)");
  if (!(precision > 0) || !std::isfinite(precision)) fail("precision must be a positive finite number");
}

namespace {

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

}  // namespace

// Steps of averaging that bring a minibatch fit's subsampling noise below `precision` posterior
// sds. A minibatch gradient with weight w = N / B has the full gradient's mean and, near the
// optimum, a covariance of about w H (H the likelihood's Hessian, N F_1: B independent rows, each
// weighted w, each row's score with covariance F_1; (w - 1) H without replacement); the average
// of M iterates then has covariance w H^-1 / M (Polyak-Ruppert, whatever the step size or Adam's
// scaling), i.e. w / M squared posterior sds along the likelihood's directions (at most: a prior
// takes its share of H^-1). So M = w / precision^2. Unlike Monte Carlo noise
// (which STL gradients shrink to 0 at a Gaussian posterior), this does not fade at the optimum,
// nor with more draws per step: every draw of a step sees the same rows. The total work, M B rows,
// is about N / precision^2 (400 N at 0.05 sd) whatever B, against ~10^4 N for a full-batch fit.
//
// With the control variate (ElboEstimator), the noise is that of the rows' change between the
// draw z_s and the reference z~ instead: about (N/B) var_i(h_i) |z_s - z~|^2 per coordinate in
// one dimension (h_i row i's curvature, H = N mean(h_i)), against the plain minibatch's
// (N/B) N mean(h_i) in the same units. With |z_s - z~| of order (1 + kRecentreSds) posterior sds
// (q's mean within kRecentreSds of z~, plus the draw's own spread) that is the plain weight
// times (1 + kRecentreSds)^2 cv^2 / N, cv the rows' coefficient of variation of curvature:
// w_cv = (1 + kRecentreSds)^2 cv^2 / B, taken with cv = 1. For B in the hundreds and up, that is
// far below the Monte Carlo noise, and the fit behaves as a full-batch one. (Rows whose curvature
// varies far more, or a log density far from quadratic over a few sds, make it larger; the
// averaging phase's trend test and the refinement's comparison of levels measure what is left.)
constexpr double kRecentreSds = 1.0;

static double subsampling_weight(const Model& model, const FitOptions& opt) {
  if (opt.batch_size <= 0) return 0.0;
  const Index n = model.data_rows();
  if (opt.batch_size >= n) return 0.0;
  if (opt.control_variate) return (1.0 + kRecentreSds) * (1.0 + kRecentreSds) / double(opt.batch_size);
  return double(n) / double(opt.batch_size);
}

static Index minibatch_averaging_steps(const Model& model, const FitOptions& opt) {
  const double w = subsampling_weight(model, opt);
  return w > 0 ? Index(std::ceil(w / (opt.precision * opt.precision))) : 0;
}

FitResult run_fit(Model& model, GaussianFamily& family, const Eigen::Ref<const Vector>& phi0, const FitOptions& opt,
                  const Monitor& monitor, const Preconditioner* preconditioner) {
  opt.validate();
  if (phi0.size() != family.num_params()) throw std::invalid_argument("initial parameters have the wrong length");
  if (!phi0.allFinite()) throw std::invalid_argument("initial parameters must be finite");

  ElboEstimator estimator(model, family, opt.draws, opt.gradient, preconditioner, opt.threads, opt.batch_size,
                          opt.control_variate);
  Adam adam(family.num_params(), opt.beta1, opt.beta2, opt.adam_epsilon);
  FitResult r;
  r.phi = phi0;
  Vector grad(family.num_params());
  WindowAverage window_average(opt.average ? family.num_params() : 0);
  Vector tail_sum = Vector::Zero(opt.average ? family.num_params() : 0);  // after convergence
  Index tail_steps = 0, tail_target = 0;
  const Index minibatch_tail = minibatch_averaging_steps(model, opt);
  // The same noise in the block means the stopping rule compares: the mean of a block's L steps
  // scatters by about sqrt(w / L) posterior sds (as above, with M = L), far above the drift and
  // rise thresholds tuned for full-batch fits, whose noise fades at the optimum. For minibatches
  // both thresholds are raised to 3 sqrt(2) times that, so that the difference of two block means
  // must exceed its noise (3 sds of it) to count as movement; full-batch fits are unchanged.
  const double block_noise =
      std::sqrt(subsampling_weight(model, opt) / double(std::max<Index>(1, opt.block * opt.eval_every)));
  const double drift_limit = std::max(opt.max_drift, 3.0 * std::sqrt(2.0) * block_noise);
  const double rise_threshold = std::max(kRiseThreshold, 3.0 * std::sqrt(2.0) * block_noise);
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
    return "estimated error of q's means " + format_number(r.error_mean, 3) + " sd, of its log sds " +
           format_number(r.error_scale, 3);
  };

  // The control variate's reference: q's mean, moved when q's mean leaves it (kRecentreSds), but
  // at most once per N / B steps: a full evaluation reads as many rows as N / B steps do, so the
  // full passes at most double the rows read even while q's mean moves fast (early, from a start
  // far from the posterior, where the reference's help matters least).
  const bool recentre = estimator.uses_control_variate();
  const Index recentre_gap =
      recentre ? Index(std::ceil(double(model.data_rows()) / double(std::max<Index>(1, opt.batch_size)))) : 0;
  Index last_reference = 0;
  Vector reference, q_log_sd;
  auto set_reference = [&](Index step) {
    if (estimator.set_reference(r.phi.head(family.dim()), opt.threads)) reference = r.phi.head(family.dim());
    ++r.full_evaluations;
    last_reference = step;
  };
  auto reference_left_behind = [&](Index step) {
    if (step - last_reference < recentre_gap) return false;
    if (!estimator.has_reference()) return true;
    family.log_marginal_sd(r.phi, q_log_sd);
    for (Index j = 0; j < family.dim(); ++j)
      if (std::abs(r.phi(j) - reference(j)) > kRecentreSds * std::exp(q_log_sd(j))) return true;
    return false;
  };
  if (recentre) {
    reference.resize(family.dim());
    q_log_sd.resize(family.dim());
    set_reference(0);
  }

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
    if (window_end && recentre && reference_left_behind(t + 1)) set_reference(t + 1);
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
          blocks.close_block(rise_threshold);
          if (r.converged && tail_steps > 0) tail_trend.add(blocks.block_mean(), blocks.block_log_sd());
        }
        if (++windows_since_check >= opt.block && Index(r.elbo.size()) >= 2 * opt.block) {
          windows_since_check = 0;
          const ElboCheck c = check_elbo(r.elbo, elbo_var, opt, block_windows);
          last_check = c;
          blocks.drifting(drift_limit, drifting);
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
          tail_target =
              std::max({t + 1 - level_start, (opt.average_draws + opt.draws - 1) / opt.draws, minibatch_tail});
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
          r.message += "; refined " + std::to_string(r.refinements) + " time(s), to step size " + format_number(lr, 3) +
                       ": " + error_words();
        } else if (r.refinements >= opt.refine_levels) {
          stop = exhausted = true;
          r.converged = false;
          r.converged_step = -1;
          r.message = "not converged to the requested precision: after " + std::to_string(r.refinements) +
                      " step-size refinement(s) the averaged q still moved between step sizes (" + error_words() +
                      ", precision " + format_number(opt.precision, 3) + "); try more draws or steps";
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
        r.message += "; refined " + std::to_string(r.refinements) + " time(s), to step size " + format_number(lr, 3) +
                     ": " + error_words() + " (from an averaging phase cut short after " + std::to_string(tail_steps) +
                     " steps)";
      } else {
        r.converged = false;
        r.converged_step = -1;
        if (!r.interrupted) {
          r.message = have_level ? "ran out of steps while refining the step size (" + error_words() + ", precision " +
                                       format_number(opt.precision, 3) + ")"
                                 : "q became stationary, but the steps ran out before the step-size refinement that "
                                   "bounds its error; raise steps";
        }
      }
    } else if (have_level && r.message.empty()) {
      r.message = "ran out of steps while refining, at step size " + format_number(lr, 3) + " (refinement " +
                  std::to_string(r.refinements) + "): q is the average at step size " +
                  format_number(lr / opt.refine_factor, 3);
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
        add("the ELBO still changed by " + format_number(short_term ? last_check.diff : last_check.diff_long, 3) +
            " nats over " + std::to_string(span) + " steps, Monte Carlo noise " + format_number(last_check.se, 3));
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
