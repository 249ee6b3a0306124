// The optimisation loop: Adam on the reparameterised ELBO gradient, windowed ELBO monitoring,
// a noise-aware stopping rule confirmed by iterate averaging, and recovery from non-finite steps.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fastvi/elbo.hpp"

namespace fastvi {

struct FitOptions {
  Index steps = 10000;  // maximum number of optimisation steps
  Index draws = 1;      // Monte Carlo draws per gradient step, evaluated as one batch
  GradientEstimator gradient = GradientEstimator::StickingTheLanding;
  double lr = 0.01;  // Adam step size
  double beta1 = 0.9, beta2 = 0.999, adam_epsilon = 1e-8;
  Index eval_every = 100;  // steps per ELBO window
  // Stopping rule (check_elbo, BlockMonitor and TailTrend in convergence.hpp). Every `block` windows the
  // fit is "settled" when all of these hold:
  //  * the ELBO: with d1 the change of the mean ELBO of the last block from the block before and
  //    d4 from the block 4 blocks back (once there are 5 blocks),
  //      |d1| < max(rate, noise_z * se)  and  |d4| < max(4 rate, noise_z * se),
  //      rate = max(tol_abs, tol * improvement),  improvement = max(0, ELBO now - first window's),
  //    where se is the Monte Carlo standard error of a difference of two block means (the smaller
  //    of two estimates: the scatter of each window's single-step ELBOs, and the scatter of the
  //    last 2 blocks' windows around a straight line, so that a steady climb is a slope, not
  //    noise). Unlike the former tol * |ELBO|, nothing here changes when a constant is added to
  //    log p (|ELBO| includes the likelihood's normalising constants and the whole distance from
  //    the optimum: at |ELBO| = 5e13 it allowed a climb of 5e8 nats per block). d4 sees a climb
  //    too slow for d1 against the noise: it adds up over 4 blocks, the noise does not.
  //  * q's mean: no coordinate's block mean moved by more than max_drift of q's sd the same way
  //    at each of the last two block ends, or by more than 2 max_drift at the last one (sds of q
  //    in the optimiser's coordinates, whitened ones when preconditioned);
  //  * q's scales: no coordinate's block-mean log sd changed by more than 0.01 the same way at
  //    each of the last 3 block ends.
  // Converged after `patience` settled checks running, then confirmed by the averaging phase
  // (average = true, and once the phase has 4 blocks): if over the phase some coordinate's block
  // means of q's mean (in sds) or log sd trend by more than 2 max_drift or 0.05, with a slope 4
  // standard errors from zero, the convergence is withdrawn and the rule starts over (a plateau
  // the fit later leaves). tol <= 0: never stop early.
  double tol = 1e-5;
  double tol_abs = 0.05;   // nats per block
  double noise_z = 2.0;    // a change within noise_z standard errors of the noise is no change
  double max_drift = 0.5;  // sds of q per block
  Index block = 5;         // windows per block
  Index patience = 2;
  // Once converged, keep going for an averaging phase and return the mean of its iterates
  // (Polyak-Ruppert tail averaging): with a constant step size the last iterate jitters around the
  // optimum by about sd / sqrt(steps the optimiser "remembers"); the average of M steps of S draws
  // is off by about sd / sqrt(M S). The phase lasts as long as the fit took to converge, and at
  // least average_draws / draws steps. Unconverged fits (including those whose convergence the
  // averaging phase withdrew) average their last two windows.
  bool average = true;
  Index average_draws = 4000;
  // Refinement (needs average and tol > 0). A constant step size leaves the averaged iterate off
  // the optimum by a bias that grows with lr (Adam's per-coordinate scaling correlates with
  // the gradient noise): 0.08 sd on a 31-parameter logistic regression at lr = 0.01, the same at
  // every seed. So once a level's averaging phase confirms convergence, the fit restarts from the
  // averaged iterate with lr * refine_factor and converges and averages again. If the bias is
  // about proportional to lr, the remaining error of the new average is about
  //   change between the two averages * refine_factor / (1 - refine_factor),
  // in q's sds for the means and in log sd for the scales, per coordinate of the model's
  // unconstrained space (FitResult::error_mean / error_scale). The fit stops when both are below
  // `precision`; after refine_levels refinements, or when the steps run out first, it is not
  // converged and says so. refine_levels = 0: one level, no refinement, no precision estimate.
  double refine_factor = 0.25;
  Index refine_levels = 3;
  double precision = 0.05;
  // Minibatch (stochastic) VI: > 0 evaluates the row-wise factors (Model::data_rows) on this many
  // rows per step, drawn anew each step (ElboEstimator), weighted to an unbiased estimate. The
  // stopping rule and refinement above are unchanged (they judge the ELBO against its own noise,
  // which the minibatch only increases); each averaging phase lasts at least (N / batch_size)
  // / precision^2 steps, which brings the subsampling noise of the average below `precision`
  // posterior sds (minibatch_averaging_steps in fit.cpp). 0: every row, every step.
  Index batch_size = 0;
  // With a minibatch: the control variate of ElboEstimator, its reference point q's mean,
  // re-evaluated on every row whenever q's mean has moved more than kRecentreSds of q's sds
  // from it along some coordinate (checked at each window end, at most once per N / batch_size
  // steps). It takes the subsampling noise
  // from that of the gradient to that of its change since the reference, so that the fit needs
  // about as many steps as a full-batch one and the averaging phase no longer lengthens
  // (subsampling_weight in fit.cpp).
  bool control_variate = true;
  std::uint64_t seed = 0;
  int threads = 1;
  double monitor_seconds = 0.25;  // the monitor is also called at least this often

  void validate() const;  // throws std::invalid_argument naming the bad setting
};

struct Progress {
  Index step = 0;      // steps done
  Index total = 0;     // maximum steps
  double elbo = kNaN;  // latest windowed ELBO
  Index skipped = 0;
};

// Called from the loop at every window end and at least every monitor_seconds. Returning false
// stops the fit (e.g. on Ctrl-C): the result then holds the state reached so far.
using Monitor = std::function<bool(const Progress&)>;

struct FitResult {
  Vector phi;                    // the family's parameters at the end (averaged if requested)
  std::vector<double> elbo;      // windowed ELBO estimates
  std::vector<Index> elbo_step;  // the step at which each window ended
  Index steps = 0;               // steps run (including skipped ones)
  // The stopping rule was met and the averaging phase confirmed it (or, cut short by the step
  // limit or an interruption before 4 blocks, did not contradict it).
  bool converged = false;
  Index converged_step = -1;
  Index averaged_steps = 0;  // iterates averaged into phi
  bool interrupted = false;
  Index skipped = 0;        // steps whose log density or gradient was not finite
  Index lr_reductions = 0;  // times the step size was halved (after repeated bad steps or a divergence)
  Index divergences = 0;    // times the ELBO fell away from its best and the fit went back to it
  double final_lr = 0.0;
  std::string message;  // why the fit stopped, in words
  // Unconverged fits only, as of the last check of the stopping rule (coordinates of the space
  // the optimiser works in: the model's unconstrained coordinates, whitened when preconditioned):
  std::vector<Index> drifting;   // whose mean was still moving by more than max_drift sd per block
  std::vector<Index> growing;    // whose log sd kept rising, block after block
  std::vector<Index> shrinking;  // whose log sd kept falling, block after block (q collapsing)
  Vector log_sd;                 // log of q's marginal sds (unconstrained space) at the end
  // Refinement (see FitOptions): levels run after the first, and the estimated remaining error of
  // the returned q (NaN until two levels have been compared): the largest over the unconstrained
  // coordinates of |mean error| / q's sd and of |log sd error|.
  Index refinements = 0;
  double error_mean = kNaN, error_scale = kNaN;
  Index full_evaluations = 0;  // a minibatch fit's full-batch evaluations (control variate references)
};

// Maximises the ELBO of `model` over `family` from phi0. Runs without touching Python. With an
// active preconditioner phi0 parameterises q(u) in whitened coordinates; the result's phi is
// always q(zeta)'s.
FitResult run_fit(Model& model, GaussianFamily& family, const Eigen::Ref<const Vector>& phi0, const FitOptions& options,
                  const Monitor& monitor, const Preconditioner* preconditioner = nullptr);

}  // namespace fastvi
