// The optimisation loop: Adam on the reparameterised ELBO gradient, windowed ELBO monitoring,
// a relative-change stopping rule, iterate averaging, and recovery from non-finite steps.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fastvi/elbo.hpp"

namespace fastvi {

struct FitOptions {
  Index steps = 10000;     // maximum number of optimisation steps
  Index draws = 1;         // Monte Carlo draws per gradient step, evaluated as one batch
  GradientEstimator gradient = GradientEstimator::StickingTheLanding;
  double lr = 0.01;        // Adam step size
  double beta1 = 0.9, beta2 = 0.999, adam_epsilon = 1e-8;
  Index eval_every = 100;  // steps per ELBO window
  // Stopping rule (see elbo_settled in fit.cpp): the mean ELBO over the last `block` windows
  // differs from the `block` windows before by less than max(tol * |ELBO|, tol_abs), `patience`
  // comparisons running. tol <= 0: never stop early.
  double tol = 1e-5;
  double tol_abs = 0.05;   // nats
  Index block = 5;         // windows per block
  Index patience = 2;
  // Once converged, keep going for an averaging phase and return the mean of its iterates
  // (Polyak-Ruppert tail averaging): with a constant step size the last iterate jitters around the
  // optimum by about sd / sqrt(steps the optimiser "remembers"); the average of M steps of S draws
  // is off by about sd / sqrt(M S). The phase lasts as long as the fit took to converge, and at
  // least average_draws / draws steps. Unconverged fits average their last two windows.
  bool average = true;
  Index average_draws = 4000;
  std::uint64_t seed = 0;
  int threads = 1;
  double monitor_seconds = 0.25;  // the monitor is also called at least this often

  void validate() const;  // throws std::invalid_argument naming the bad setting
};

struct Progress {
  Index step = 0;       // steps done
  Index total = 0;      // maximum steps
  double elbo = kNaN;   // latest windowed ELBO
  Index skipped = 0;
};

// Called from the loop at every window end and at least every monitor_seconds. Returning false
// stops the fit (e.g. on Ctrl-C): the result then holds the state reached so far.
using Monitor = std::function<bool(const Progress&)>;

struct FitResult {
  Vector phi;                       // the family's parameters at the end (averaged if requested)
  std::vector<double> elbo;         // windowed ELBO estimates
  std::vector<Index> elbo_step;     // the step at which each window ended
  Index steps = 0;                  // steps run (including skipped ones)
  bool converged = false;
  Index converged_step = -1;
  Index averaged_steps = 0;         // iterates averaged into phi
  bool interrupted = false;
  Index skipped = 0;                // steps whose log density or gradient was not finite
  Index lr_reductions = 0;          // times the step size was halved after repeated bad steps
  double final_lr = 0.0;
  std::string message;              // why the fit stopped, in words
};

// Maximises the ELBO of `model` over `family` from phi0. Runs without touching Python. With an
// active preconditioner phi0 parameterises q(u) in whitened coordinates; the result's phi is
// always q(zeta)'s.
FitResult run_fit(Model& model, GaussianFamily& family, const Eigen::Ref<const Vector>& phi0,
                  const FitOptions& options, const Monitor& monitor, const Preconditioner* preconditioner = nullptr);

}  // namespace fastvi
