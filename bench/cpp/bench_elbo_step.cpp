// Time of one ELBO-gradient step (ElboEstimator::estimate: draws, log density and gradient, family
// gradient) for the seed model and for logistic regression with bernoulli_logit_glm.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>

#include "fastvi/elbo.hpp"
#include "models.hpp"

namespace {

using namespace fastvi;

// Runs estimate() at a fixed phi (the family's initial point) with a new step index per iteration,
// so every iteration sees fresh draws.
void run_steps(benchmark::State& state, Model& model, Index draws, int threads, double flops_per_step,
               double items_per_step) {
  MeanFieldGaussian family(model.dim());
  ElboEstimator estimator(model, family, draws);
  Vector phi(family.num_params()), grad(family.num_params());
  family.initialise(phi, Vector::Zero(model.dim()), 0.1);
  double elbo = 0.0;
  std::uint64_t step = 0;
  for (auto _ : state) {
    const bool ok = estimator.estimate(phi, 0, Stream::Optimise, step++, grad, elbo, threads);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  const double steps = double(state.iterations());
  state.SetItemsProcessed(std::int64_t(steps * items_per_step));
  if (flops_per_step > 0)
    state.counters["GFLOP/s"] = benchmark::Counter(steps * flops_per_step * 1e-9, benchmark::Counter::kIsRate);
}

// (a) w ~ normal(0, 1), 100 x_i ~ normal(w, 1); mean-field, one draw per step. Items: steps.
void BM_SeedModel(benchmark::State& state) {
  Model model;
  bench::build_seed_model(model);
  run_steps(state, model, 1, 1, 0.0, 1.0);
}
BENCHMARK(BM_SeedModel)->UseRealTime()->Unit(benchmark::kMicrosecond);

// (b) logistic regression, N = 10,000 rows, K = 50 predictors, alpha and beta parameters;
// mean-field, S draws per step, `threads` OpenMP threads. Items: observation-draw pairs (N S) per
// step; GFLOP/s counts the two products (X B and X^T R) at 4 N K S flops per step.
void BM_LogisticGlm(benchmark::State& state) {
  const Index n = 10000, k = 50, draws = state.range(0);
  const int threads = int(state.range(1));
  Model model;
  bench::build_glm_model(model, "bernoulli_logit_glm", n, k);
  run_steps(state, model, draws, threads, 4.0 * double(n * k * draws), double(n * draws));
}
BENCHMARK(BM_LogisticGlm)
    ->ArgsProduct({{1, 8, 32}, {1, 2}})
    ->ArgNames({"S", "threads"})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
