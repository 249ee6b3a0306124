#include "fastvi/fit.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
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
  if (average_draws < 0) fail("average_draws must be >= 0");
  if (threads < 1) fail("threads must be >= 1");
}

namespace {

// After this many consecutive non-finite steps the fit returns to its last good checkpoint and
// halves the step size ...
constexpr Index kBadStepsBeforeBackoff = 5;
// ... and after this many halvings in all (the step size is then ~1e-9 of what was asked for),
// the fit gives up and says so.
constexpr Index kMaxBackoffs = 30;

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

// The stopping rule: the mean ELBO of the last `block` windows differs from the mean of the
// `block` windows before by less than max(tol * |ELBO|, tol_abs). Means over blocks, not single
// windows, so that window-to-window noise does not decide; an absolute floor because the ELBO's
// size includes the normalising constants of the likelihood and says nothing about how settled q
// is (a fit with |ELBO| = 4 would otherwise need changes below 4e-4 nats, and one with
// |ELBO| = 1e5 would stop while still climbing by nats per block).
bool elbo_settled(const std::vector<double>& elbo, const FitOptions& opt) {
  const size_t n = elbo.size(), b = size_t(opt.block);
  double recent = 0.0, before = 0.0;
  for (size_t i = 0; i < b; ++i) {
    recent += elbo[n - 1 - i];
    before += elbo[n - 1 - b - i];
  }
  recent /= double(b);
  before /= double(b);
  return std::abs(recent - before) < std::max(opt.tol * std::abs(recent), opt.tol_abs);
}

}  // namespace

FitResult run_fit(Model& model, GaussianFamily& family, const Eigen::Ref<const Vector>& phi0,
                  const FitOptions& opt, const Monitor& monitor, const Preconditioner* preconditioner) {
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
  Vector reference = align ? r.phi : Vector(), aligned = reference;
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
  Index window_bad = 0;
  double window_sum = 0.0;
  Index window_good = 0, bad_run = 0, below_tol = 0, windows_since_check = 0;
  using Clock = std::chrono::steady_clock;
  auto last_monitor = Clock::now();
  Progress progress;
  progress.total = opt.steps;
  bool stop = false;

  Index t = 0;
  for (; t < opt.steps && !stop; ++t) {
    double elbo = 0.0;
    if (estimator.estimate(r.phi, opt.seed, Stream::Optimise, std::uint64_t(t), grad, elbo, opt.threads)) {
      adam.step(r.phi, grad, lr);
      window_sum += elbo;
      ++window_good;
      bad_run = 0;
    } else {
      ++r.skipped;
      ++window_bad;
      if (++bad_run >= kBadStepsBeforeBackoff) {
        r.phi = checkpoint;
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
    if (opt.average) {
      if (align) {
        if (r.converged ? tail_steps == 0 : window_average.n_current == 0) reference = r.phi;
        aligned = r.phi;
        family.align(aligned, reference);
      }
      const Vector& averaged = align ? aligned : r.phi;
      if (r.converged) {
        tail_sum += averaged;
        if (++tail_steps >= tail_target) stop = true;
      } else {
        window_average.add(averaged);
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
        if (++windows_since_check >= opt.block && Index(r.elbo.size()) >= 2 * opt.block) {
          windows_since_check = 0;
          below_tol = elbo_settled(r.elbo, opt) ? below_tol + 1 : 0;
        }
        if (opt.tol > 0 && !r.converged && below_tol >= opt.patience) {
          r.converged = true;
          r.converged_step = t + 1;
          r.message = "converged: the ELBO averaged over blocks of " + std::to_string(opt.block * opt.eval_every) +
                      " steps changed by less than max(tol * |ELBO|, tol_abs) " + std::to_string(opt.patience) +
                      " times running";
          tail_target = std::max(t + 1, (opt.average_draws + opt.draws - 1) / opt.draws);
          if (!opt.average) stop = true;
        }
      }
      window_sum = 0.0;
      window_good = 0;
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
  if (r.message.empty()) r.message = "reached the maximum number of steps without meeting the tolerance";
  if (opt.average) {
    if (tail_steps > 0) {
      r.phi = tail_sum / double(tail_steps);
      r.averaged_steps = tail_steps;
    } else {
      r.averaged_steps = window_average.result(r.phi, family);
    }
  }
  r.final_lr = lr;
  if (preconditioner && preconditioner->active()) family.unwhiten(r.phi, *preconditioner);
  return r;
}

}  // namespace fastvi
