// C++ micro-benchmarks of one optimisation step, with the roofline they are measured against.
//
// Steps, each timed two ways: "grad" is one ELBO-gradient step (ElboEstimator::estimate: draws,
// log density and gradient, family gradient) at a fixed phi; "adam" is one full step of a fit
// (estimate + Adam::step, phi moving as in run_fit). Models:
//   seed       w ~ normal(0, 1), 100 x_i ~ normal(w, 1); mean-field (D = 1)
//   linreg     normal_id_glm, N = 1,000, K = 10 (alpha, beta, sigma); mean-field
//   logistic   bernoulli_logit_glm, N = 10,000 or 100,000, K = 50; mean-field; S = 1 ... 128
//   logistic_f32  the same with X float32 (read in place), N = 10,000; S = 1, 8, 32
//   fullrank   z (D) ~ normal(0, 1) with the full-rank family, D = 10, 100, 1,000, and the
//              closed-form entropy gradient (fv.fit's default for it)
//   kernel     every element-wise kernel as a likelihood: its variate N = 1,000 data, every other
//              input that can be a parameter a parameter, "scalar" (shape ()), "vector" (shape
//              (N,)) or "broadcast" (y (100, 10), parameters (100, 1): the element-by-element
//              path); mean-field, S = 1 and 8, 1 thread, grad only. Select them with
//              --benchmark_filter=^kernel/
//   evaluate   the same kernels' Kernel::evaluate alone (no family, no transforms), for the
//              layouts above and three more: "prior" (the variate a (1000,) parameter, the other
//              inputs scalar data), "small" (y (3, 4), parameters (3, 1): fewer elements than the
//              vectorised path takes) and "one" (a scalar prior). --benchmark_filter=^evaluate/
// Counters: GFLOP/s counts 4 N K S flops per GLM step (the two products X B and X^T R), and
// 2 D^2 S per full-rank step (L eps and the lower triangle of g eps^T); X_GB/s counts
// N K 8 bytes of X per GLM step (X is read once per step).
//
// Roofline, measured in the same run ("roof/..." benchmarks):
//   roof/read     read bandwidth of a double array of N K doubles (4 MB: L3-resident on a
//                 32 MB-L3 machine; 40 MB: mostly DRAM) and of a DRAM-sized 512 MB one, with 1
//                 and 2 threads;
//   roof/gemm     Eigen GEMM rates: a large square product (2 n^3 flops), and the GLM kernel's own
//                 block shapes (X_blk B and X_blk^T R on an in-cache row block).
// The roofline time of a GLM step is max(N K 8 / bandwidth, 4 N K S / peak); the table printed at
// the end gives fastvi's step time / roofline time for every logistic case.
//
// The kernel's own in-cache floor, also measured in the same run ("floor/..."), for the
// "ratio(floor)" column: how close a step comes to what its arithmetic alone costs with X in L1.
//   floor/rows_in_l1   the single-pass row kernel (glm_rows.hpp: dot products and axpy) on one
//                      pass of rows (glm_rows::pass_rows(K): 64 for K = 50 with a 48 KiB L1d, 32 with
//                      32 KiB) in L1, over and over (GFLOP/s at 4 K flops per row and draw);
//   floor/rows_in_l1_f32  the same on float32 rows, widened in registers (S = 1) or widened into a
//                      padded buffer first (glm_rows::widen_rows, S > 1);
//   floor/logistic     the logistic column's vectorised exp, log1p and 1 / (1 + t) on 4,096
//                      elements in L1 (ns per element);
//   floor/logistic_column/rows:R  bernoulli_logit_glm's column pass itself on 4,096 elements in
//                      L1, in calls of R elements (ns per element).
// floor time = 4 N K S / rate + N S ns, with the row kernel's rate for S <= glm_rows::max_draws(K)
// and the block-shape GEMM rate above it.
//
// External BLAS (fastvi/blas.hpp): FASTVI_BENCH_DGEMM=<shared library>:<symbol> makes the GLM
// kernels' GEMM path call that dgemm (as fastvi's Python package does with scipy's BLAS), e.g.
//   FASTVI_BENCH_DGEMM=$(python -c "import scipy, glob, os; print(glob.glob(os.path.join(
//     os.path.dirname(scipy.__file__) + '.libs', 'libscipy_openblas*.so'))[0])"):scipy_dgemm_
// Without it the products are Eigen's, as in a C++-only build. The context line "dgemm" says which.
//
// OpenMP: run with OMP_WAIT_POLICY=PASSIVE, as fastvi's Python package sets it (workers sleep
// between regions instead of spinning). If it is not set, main() sets it and re-executes itself.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <memory>
#include <string>
#include <vector>

#include "fastvi/adam.hpp"
#include "fastvi/blas.hpp"
#include "fastvi/elbo.hpp"
#include "glm_families.hpp"  // cpp/src/kernels: the logistic column, for its in-cache floor
#include "glm_rows.hpp"      // cpp/src/kernels: the row kernel, for its in-cache floor
#include "glm_tuning.hpp"    // cpp/src/kernels: the knobs the sweeps below turn
#include "models.hpp"
#include "packet_math.hpp"  // cpp/src/kernels: the logistic column's exp and log1p

namespace {

using namespace fastvi;

enum class StepKind { Grad, Adam };

struct StepCost {
  double flops = 0.0;    // per step, for the GFLOP/s counter
  double x_bytes = 0.0;  // bytes of X per step, for the X_GB/s counter
};

void run_steps(benchmark::State& state, Model& model, GaussianFamily& family, Index draws, int threads, StepKind kind,
               StepCost cost, GradientEstimator gradient = GradientEstimator::StickingTheLanding) {
  ElboEstimator estimator(model, family, draws, gradient, nullptr, threads);
  Adam adam(family.num_params());
  Vector phi(family.num_params()), grad(family.num_params());
  family.initialise(phi, Vector::Zero(model.dim()), 0.1);
  double elbo = 0.0;
  std::uint64_t step = 0;
  std::int64_t bad = 0;
  for (auto _ : state) {
    const bool ok = estimator.estimate(phi, 0, Stream::Optimise, step++, grad, elbo, threads);
    if (kind == StepKind::Adam) {
      if (ok)
        adam.step(phi, grad, 0.01);
      else
        ++bad;
    }
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(grad.data());
    benchmark::DoNotOptimize(phi.data());
    benchmark::ClobberMemory();
  }
  const double steps = double(state.iterations());
  if (cost.flops > 0)
    state.counters["GFLOP/s"] = benchmark::Counter(steps * cost.flops * 1e-9, benchmark::Counter::kIsRate);
  if (cost.x_bytes > 0)
    state.counters["X_GB/s"] = benchmark::Counter(steps * cost.x_bytes * 1e-9, benchmark::Counter::kIsRate);
  if (bad > 0) state.SetLabel(std::to_string(bad) + " non-finite steps");
}

// Kernel::evaluate of the model's first factor alone, at draws from a fixed normal(0, 0.3) zeta
// (it keeps adding to the same lp and grad).
void run_kernel(benchmark::State& state, Model& model, Index draws) {
  Matrix zeta(model.dim(), draws), grad(model.dim(), draws);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (Index i = 0; i < zeta.size(); ++i) zeta.data()[i] = normal(rng);
  Vector lp(draws);
  ModelWorkspace ws;
  model.prepare(ws, draws, 1);
  model.log_density(zeta, ws, lp, grad, 1);  // the constrained values
  const Kernel& kernel = *model.factors()[0].impl;
  Batch batch{ws.theta.data(),
              ws.grad_theta.data(),
              lp.data(),
              ws.theta.rows(),
              draws,
              1,
              ws.scratch.data() + ws.factor_scratch[0]};
  for (auto _ : state) {
    kernel.evaluate(batch);
    benchmark::DoNotOptimize(lp.data());
    benchmark::ClobberMemory();
  }
}

const char* kind_name(StepKind k) { return k == StepKind::Grad ? "grad" : "adam"; }

std::string glm_name(const std::string& model, Index n, Index k, Index s, int threads, StepKind kind) {
  return model + "/N:" + std::to_string(n) + "/K:" + std::to_string(k) + "/S:" + std::to_string(s) +
         "/threads:" + std::to_string(threads) + "/" + kind_name(kind);
}

benchmark::internal::Benchmark* add(const std::string& name, std::function<void(benchmark::State&)> fn) {
  return benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& st) { fn(st); })
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}

void register_glm(const std::string& model, const std::string& kernel, Index n, Index k, Index s, int threads,
                  StepKind kind, bool x_float32 = false) {
  add(glm_name(model, n, k, s, threads, kind), [=](benchmark::State& st) {
    Model m;
    bench::build_glm_model(m, kernel, n, k, true, 1, x_float32);
    MeanFieldGaussian family(m.dim());
    const double nks = double(n) * double(k) * double(s);
    run_steps(st, m, family, s, threads, kind, {4.0 * nks, (x_float32 ? 4.0 : 8.0) * double(n) * double(k)});
  });
}

// ---- Roofline ------------------------------------------------------------------------------

// Sum of x[0, n): 32 independent partial sums (four AVX-512 registers), so the loop is limited by
// loads, not by the latency of the additions.
double sum_array(const double* x, std::size_t n) {
  double acc[32] = {};
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 32; ++j) acc[j] += x[i + j];
  for (; i < n; ++i) acc[0] += x[i];
  double total = 0.0;
  for (double a : acc) total += a;
  return total;
}

void register_read(std::size_t bytes, int threads) {
  const std::string name = "roof/read/bytes:" + std::to_string(bytes) + "/threads:" + std::to_string(threads);
  add(name, [=](benchmark::State& st) {
    const std::size_t n = bytes / sizeof(double);
    std::unique_ptr<double[]> owner(new double[n + 8]);
    double* x = owner.get();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::size_t i = 0; i < n; ++i) x[i] = 1e-9 * double(i % 1000);  // first touch by its reader
    double sums[2] = {0.0, 0.0};
    for (auto _ : st) {
      if (threads == 1) {
        sums[0] = sum_array(x, n);
      } else {
#pragma omp parallel num_threads(threads)
        {
          const int t = omp_get_thread_num(), nt = omp_get_num_threads();
          const std::size_t lo = n * std::size_t(t) / std::size_t(nt), hi = n * std::size_t(t + 1) / std::size_t(nt);
          sums[t % 2] = sum_array(x + lo, hi - lo);
        }
      }
      benchmark::DoNotOptimize(sums);
    }
    st.counters["GB/s"] =
        benchmark::Counter(double(st.iterations()) * double(bytes) * 1e-9, benchmark::Counter::kIsRate);
  });
}

// One thread per core runs its own GEMM (fastvi builds Eigen with EIGEN_DONT_PARALLELIZE, so a
// product never threads by itself): the machine's GEMM throughput for `threads` threads.
void register_square_gemm(Index n, int threads) {
  const std::string name = "roof/gemm/square:" + std::to_string(n) + "/threads:" + std::to_string(threads);
  add(name, [=](benchmark::State& st) {
    std::vector<Matrix> a(2, Matrix::Random(n, n)), b(2, Matrix::Random(n, n)), c(2, Matrix::Zero(n, n));
    for (auto _ : st) {
      if (threads == 1) {
        c[0].noalias() = a[0] * b[0];
      } else {
#pragma omp parallel num_threads(threads)
        {
          const int t = omp_get_thread_num() % 2;
          c[t].noalias() = a[t] * b[t];
        }
      }
      benchmark::DoNotOptimize(c[0].data());
      benchmark::DoNotOptimize(c[1].data());
    }
    st.counters["GFLOP/s"] = benchmark::Counter(double(st.iterations()) * threads * 2.0 * double(n) * n * n * 1e-9,
                                                benchmark::Counter::kIsRate);
  });
}

// The GLM kernel's products for one in-cache row block and a panel of p draws (the block size
// follows the rule in glm.cpp for K = 50): eta = X_blk B, then G += X_blk^T eta.
Index glm_block_rows(Index k, Index panel) {
  const Index budget = 12288;
  Index blk = 256;
  while (blk > 8 && (k * (blk + panel) > budget || blk * (k + panel) > budget)) blk -= 8;
  return blk;
}

void register_glm_shape_gemm(Index k, Index p) {
  const std::string name = "roof/gemm/glm_block/K:" + std::to_string(k) + "/S:" + std::to_string(p) + "/threads:1";
  add(name, [=](benchmark::State& st) {
    const Index blk = glm_block_rows(k, p);
    const RowMatrix x = RowMatrix::Random(blk, k);
    const Matrix b = Matrix::Random(k, p);
    Matrix eta(blk, p), g = Matrix::Zero(k, p);
    for (auto _ : st) {
      eta.noalias() = x * b;
      g.noalias() += x.transpose() * eta;
      benchmark::DoNotOptimize(g.data());
    }
    st.counters["GFLOP/s"] =
        benchmark::Counter(double(st.iterations()) * 4.0 * double(blk) * k * p * 1e-9, benchmark::Counter::kIsRate);
    st.SetLabel("block rows " + std::to_string(blk));
  });
}

// ---- The kernel's in-cache floor -------------------------------------------------------------

void register_rows_in_l1(Index k) {
  add("floor/rows_in_l1/K:" + std::to_string(k), [=](benchmark::State& st) {
    const Index rows = kernels::glm_rows::pass_rows(k);
    const Index padded = kernels::glm_rows::packets(k) * kernels::glm_rows::kWidth;
    Vector x = Vector::Random(rows * k + kernels::glm_rows::kWidth), beta = Vector::Zero(padded),
           g = Vector::Zero(padded), eta(rows);
    x.tail(kernels::glm_rows::kWidth).setZero();
    beta.head(k).setRandom();
    for (auto _ : st) {
      kernels::glm_rows::dot_rows(x.data(), k, k, rows, beta.data(), eta.data());
      eta *= 1e-3;  // stands in for the residuals (cheap; keeps g bounded)
      kernels::glm_rows::axpy_rows(x.data(), k, k, rows, eta.data(), g.data());
      benchmark::DoNotOptimize(g.data());
    }
    st.counters["GFLOP/s"] =
        benchmark::Counter(double(st.iterations()) * 4.0 * double(rows * k) * 1e-9, benchmark::Counter::kIsRate);
  });
}

// The same with X float32, both ways the kernel runs a float32 pass: "in_registers" (S = 1) widens
// each packet as the products read it; "widened" (S > 1) widens the pass once into a buffer at the
// padded row stride (glm_rows::widen_rows), then runs both products on the doubles.
void register_rows_in_l1_float32(Index k) {
  for (const bool widened : {false, true})
    add(std::string("floor/rows_in_l1_f32/") + (widened ? "widened" : "in_registers") + "/K:" + std::to_string(k),
        [=](benchmark::State& st) {
          const Index rows = kernels::glm_rows::pass_rows(k);
          const Index padded = kernels::glm_rows::packets(k) * kernels::glm_rows::kWidth;
          const Vector x64 = Vector::Random(rows * k + kernels::glm_rows::kWidth);
          std::vector<float> x(x64.data(), x64.data() + x64.size());
          std::fill(x.end() - kernels::glm_rows::kWidth, x.end(), 0.0f);
          Vector wide = Vector::Zero(rows * padded), beta = Vector::Zero(padded), g = Vector::Zero(padded), eta(rows);
          beta.head(k).setRandom();
          for (auto _ : st) {
            if (widened) {
              kernels::glm_rows::widen_rows(x.data(), k, rows, wide.data(), nullptr, 0);
              kernels::glm_rows::dot_rows(wide.data(), k, padded, rows, beta.data(), eta.data());
              eta *= 1e-3;
              kernels::glm_rows::axpy_rows(wide.data(), k, padded, rows, eta.data(), g.data());
            } else {
              kernels::glm_rows::dot_rows(x.data(), k, k, rows, beta.data(), eta.data());
              eta *= 1e-3;
              kernels::glm_rows::axpy_rows(x.data(), k, k, rows, eta.data(), g.data());
            }
            benchmark::DoNotOptimize(g.data());
          }
          st.counters["GFLOP/s"] =
              benchmark::Counter(double(st.iterations()) * 4.0 * double(rows * k) * 1e-9, benchmark::Counter::kIsRate);
        });
}

void register_logistic_terms() {
  add("floor/logistic", [](benchmark::State& st) {
    using namespace kernels::packet_math;
    constexpr int M = 4;
    const Index n = 4096;
    const Eigen::ArrayXd a = -4.0 * Eigen::ArrayXd::Random(n).abs();  // -|eta|
    Eigen::ArrayXd l(n), inv(n);
    for (auto _ : st) {
      for (Index i = 0; i < n; i += M * kWidth) {
        Packet x[M], t[M], lp[M], q[M];
        for (int j = 0; j < M; ++j) x[j] = Eigen::internal::ploadu<Packet>(a.data() + i + j * kWidth);
        exp_packets<M>(x, t);
        log1p_and_inverse<M>(t, lp, q);
        for (int j = 0; j < M; ++j) {
          Eigen::internal::pstoreu(l.data() + i + j * kWidth, lp[j]);
          Eigen::internal::pstoreu(inv.data() + i + j * kWidth, q[j]);
        }
      }
      benchmark::DoNotOptimize(l.data());
      benchmark::DoNotOptimize(inv.data());
    }
    // kIsRate | kInvert: elapsed seconds / value; the 1e-9 makes that nanoseconds per element.
    st.counters["ns/elem"] = benchmark::Counter(double(st.iterations()) * double(n) * 1e-9,
                                                benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  });
  // The bernoulli_logit_glm's whole column pass (residuals, log density and their sums) on 4,096
  // predictors in L1, in calls of `rows` elements: 32 and 64 as the row kernel's passes make
  // them, 4,096 as the GEMM path's blocks do. Each iteration first restores the predictors (a
  // 32 KB copy in L1, a few per cent of the time), since the pass overwrites them.
  for (const Index rows : {Index(32), Index(64), Index(4096)})
    add("floor/logistic_column/rows:" + std::to_string(rows), [rows](benchmark::State& st) {
      const Index n = 4096;
      const Eigen::ArrayXd eta0 = 4.0 * Eigen::ArrayXd::Random(n);
      const Eigen::VectorXd y = (Eigen::ArrayXd::Random(n) > 0.0).cast<double>();
      Eigen::ArrayXd eta(n);
      for (auto _ : st) {
        eta = eta0;
        double acc = 0.0, rsum = 0.0;
        for (Index i = 0; i < n; i += rows)
          kernels::glm_families::BernoulliLogit::column(y.data() + i, eta.data() + i, nullptr, rows, 0.0, acc, rsum);
        benchmark::DoNotOptimize(acc);
        benchmark::DoNotOptimize(rsum);
        benchmark::DoNotOptimize(eta.data());
      }
      st.counters["ns/elem"] = benchmark::Counter(double(st.iterations()) * double(n) * 1e-9,
                                                  benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
    });
}

// ---- The roofline table ----------------------------------------------------------------------

struct Result {
  double seconds = 0.0;  // real time per iteration
  benchmark::UserCounters counters;
  bool median = false;
};

// The console output as usual, plus every result kept (the median when there are repetitions).
class CollectingReporter : public benchmark::ConsoleReporter {
 public:
  std::map<std::string, Result> results;
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      const bool is_median = r.run_type == Run::RT_Aggregate && r.aggregate_name == "median";
      if (r.run_type == Run::RT_Aggregate && !is_median) continue;
      Result& slot = results[r.run_name.function_name];
      if (slot.median && !is_median) continue;
      slot.seconds = r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit);
      slot.counters = r.counters;
      slot.median = is_median;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

double counter(const std::map<std::string, Result>& res, const std::string& name, const std::string& key) {
  auto it = res.find(name);
  if (it == res.end()) return 0.0;
  auto c = it->second.counters.find(key);
  return c == it->second.counters.end() ? 0.0 : double(c->second);
}

void print_roofline(const std::map<std::string, Result>& res, Index k, const std::vector<Index>& ns,
                    const std::vector<Index>& draws, Index square) {
  std::printf("\nRoofline of the logistic GLM step (medians of this run; K = %ld)\n", long(k));
  std::printf("  peak = Eigen GEMM, square n = %ld, same thread count; bw = read bandwidth of an array of X's size,\n",
              long(square));
  std::printf("  same thread count; roofline = max(N K 8 / bw, 4 N K S / peak); glm-block ratio uses the GEMM rate\n");
  std::printf("  of the kernel's own block shapes (1 thread x threads) as the peak instead.\n");
  std::printf("  t_floor = the kernel's in-cache floor (floor/...: row kernel or block GEMM rate, plus the logistic\n");
  std::printf("  column's ns per element); ratio(floor) = time / max(t_bw, t_floor).\n");
  std::printf("%-40s %10s %9s %9s %10s %10s %7s %11s %10s %12s\n", "case", "time(us)", "bw(GB/s)", "peak(GF)",
              "t_bw(us)", "t_flop(us)", "ratio", "ratio(blk)", "t_floor(us)", "ratio(floor)");
  for (Index n : ns)
    for (int threads : {1, 2})
      for (Index s : draws) {
        const std::string name = glm_name("logistic", n, k, s, threads, StepKind::Grad);
        auto it = res.find(name);
        if (it == res.end()) continue;
        const std::size_t bytes = std::size_t(n * k) * 8;
        const double bw =
            counter(res, "roof/read/bytes:" + std::to_string(bytes) + "/threads:" + std::to_string(threads), "GB/s");
        const double peak = counter(
            res, "roof/gemm/square:" + std::to_string(square) + "/threads:" + std::to_string(threads), "GFLOP/s");
        const double blk_peak = threads * counter(res,
                                                  "roof/gemm/glm_block/K:" + std::to_string(k) +
                                                      "/S:" + std::to_string(std::min<Index>(s, 32)) + "/threads:1",
                                                  "GFLOP/s");
        if (bw <= 0 || peak <= 0) continue;
        const double t_bw = double(bytes) / (bw * 1e9), t_flop = 4.0 * double(n * k * s) / (peak * 1e9);
        const double t_blk = blk_peak > 0 ? 4.0 * double(n * k * s) / (blk_peak * 1e9) : 0.0;
        const double t = it->second.seconds;
        // The in-cache floor: the row kernel's (S <= max_draws(K)) or the block GEMM's rate, plus the
        // logistic column, per thread.
        const double rows_rate = threads * counter(res, "floor/rows_in_l1/K:" + std::to_string(k), "GFLOP/s");
        const double col_ns = counter(res, "floor/logistic", "ns/elem") / threads;
        const double rate = s <= kernels::glm_rows::max_draws(k) ? rows_rate : blk_peak;
        const double t_floor =
            rate > 0 && col_ns > 0 ? 4.0 * double(n * k * s) / (rate * 1e9) + double(n * s) * col_ns * 1e-9 : 0.0;
        std::printf("%-40s %10.1f %9.1f %9.1f %10.1f %10.1f %7.2f %11.2f %10.1f %12.2f\n", name.c_str(), t * 1e6, bw,
                    peak, t_bw * 1e6, t_flop * 1e6, t / std::max(t_bw, t_flop),
                    blk_peak > 0 ? t / std::max(t_bw, t_blk) : 0.0, t_floor * 1e6,
                    t_floor > 0 ? t / std::max(t_bw, t_floor) : 0.0);
      }
  std::printf("\nRead bandwidth (GB/s):");
  for (const auto& [name, r] : res)
    if (name.rfind("roof/read/", 0) == 0) std::printf("\n  %-45s %8.1f", name.c_str(), counter(res, name, "GB/s"));
  std::printf("\nIn-cache floor: row kernel %.1f GFLOP/s, logistic column %.2f ns per element",
              counter(res, "floor/rows_in_l1/K:" + std::to_string(k), "GFLOP/s"),
              counter(res, "floor/logistic", "ns/elem"));
  std::printf("\nGEMM (GFLOP/s):");
  for (const auto& [name, r] : res)
    if (name.rfind("roof/gemm/", 0) == 0) std::printf("\n  %-45s %8.1f", name.c_str(), counter(res, name, "GFLOP/s"));
  std::printf("\n\nTwo threads vs one (time with 1 thread / time with 2):\n");
  for (const auto& [name, r] : res) {
    const auto pos = name.find("/threads:1/");
    if (pos == std::string::npos || name.rfind("roof/", 0) == 0) continue;
    std::string two = name;
    two.replace(pos, 11, "/threads:2/");
    auto it = res.find(two);
    if (it != res.end())
      std::printf("  %-45s %6.2fx\n", name.substr(0, pos).append(name.substr(pos + 10)).c_str(),
                  r.seconds / it->second.seconds);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // libgomp reads OMP_WAIT_POLICY when it is loaded, before main: set it and start again.
  if (!std::getenv("OMP_WAIT_POLICY")) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
    std::perror("execv");  // only reached if the re-execution failed
  }
  benchmark::AddCustomContext("OMP_WAIT_POLICY", std::getenv("OMP_WAIT_POLICY"));
  if (const char* env = std::getenv("FASTVI_BENCH_DGEMM")) {
    const std::string spec = env;
    const auto colon = spec.rfind(':');
    void* lib = colon == std::string::npos ? nullptr : dlopen(spec.substr(0, colon).c_str(), RTLD_NOW | RTLD_LOCAL);
    void* fn = lib ? dlsym(lib, spec.substr(colon + 1).c_str()) : nullptr;
    if (!fn) {
      std::fprintf(stderr, "FASTVI_BENCH_DGEMM=%s: expected <library>:<symbol> (%s)\n", env,
                   lib ? "no such symbol" : dlerror());
      return 2;
    }
    blas::set_dgemm(reinterpret_cast<blas::Dgemm>(fn));
  }
  benchmark::AddCustomContext("dgemm", std::getenv("FASTVI_BENCH_DGEMM") ? std::getenv("FASTVI_BENCH_DGEMM") : "Eigen");
  // The GLM kernels' knobs, for the sweeps below (the library reads no environment variables).
  if (const char* env = std::getenv("FASTVI_GLM_PARALLEL_WORK"))
    kernels::glm_tuning::set_parallel_work(std::strtod(env, nullptr));
  if (const char* env = std::getenv("FASTVI_GLM_FUSED_MAX_DRAWS"))
    kernels::glm_tuning::set_fused_max_draws(Index(std::strtol(env, nullptr, 10)));

  const Index k = 50;
  const std::vector<Index> logistic_n = {10000, 100000};
  const std::vector<Index> logistic_s_small = {1, 8, 32, 128}, logistic_s_large = {1, 8, 32};
  const Index square = 1024;

  for (StepKind kind : {StepKind::Grad, StepKind::Adam}) {
    add(std::string("seed/N:100/S:1/threads:1/") + kind_name(kind), [kind](benchmark::State& st) {
      Model m;
      bench::build_seed_model(m);
      MeanFieldGaussian family(m.dim());
      run_steps(st, m, family, 1, 1, kind, {});
    });
    for (Index s : {1, 8}) register_glm("linreg", "normal_id_glm", 1000, 10, s, 1, kind);
    for (int threads : {1, 2}) {
      for (Index s : logistic_s_small) register_glm("logistic", "bernoulli_logit_glm", 10000, k, s, threads, kind);
      for (Index s : logistic_s_large) register_glm("logistic", "bernoulli_logit_glm", 100000, k, s, threads, kind);
      // X in float32 (read in place, widened in registers or per pass), N = 10^4: issue 13's case.
      for (Index s : {1, 8, 32}) register_glm("logistic_f32", "bernoulli_logit_glm", 10000, k, s, threads, kind, true);
    }
    for (Index d : {10, 100, 1000})
      for (Index s : {1, 8})
        add("fullrank/D:" + std::to_string(d) + "/S:" + std::to_string(s) + "/threads:1/" + kind_name(kind),
            [=](benchmark::State& st) {
              Model m;
              bench::build_gaussian_target(m, d);
              FullRankGaussian family(m.dim());
              // The closed-form entropy gradient, as fv.fit's gradient='auto' picks for an
              // unpreconditioned full-rank fit (STL's steps can turn non-finite there).
              run_steps(st, m, family, s, 1, kind, {2.0 * double(d) * double(d) * double(s), 0.0},
                        GradientEstimator::ClosedFormEntropy);
            });
  }
  // Every element-wise kernel, one step ("grad") with each layout of its parameters.
  struct Layout {
    const char* name;
    std::vector<Index> shape, param_shape;
  };
  const std::vector<Layout> layouts = {
      {"scalar", {1000}, {}}, {"vector", {1000}, {1000}}, {"broadcast", {100, 10}, {100, 1}}};
  for (const std::string& kernel : bench::elementwise_kernels())
    for (const Layout& layout : layouts)
      for (Index s : {1, 8})
        add("kernel/" + kernel + "/" + layout.name + "/N:1000/S:" + std::to_string(s) + "/threads:1/grad",
            [=](benchmark::State& st) {
              Model m;
              bench::build_elementwise_likelihood(m, kernel, layout.shape, layout.param_shape);
              MeanFieldGaussian family(m.dim());
              run_steps(st, m, family, s, 1, StepKind::Grad, {});
            });
  for (const std::string& kernel : bench::elementwise_kernels())
    for (const char* layout : {"scalar", "vector", "broadcast", "prior", "small", "one"})
      for (Index s : {1, 8}) {
        Model probe;
        if (std::string(layout) == "prior" || std::string(layout) == "one")
          if (!bench::build_elementwise_prior(probe, kernel, {})) continue;  // a data-only variate
        add("evaluate/" + kernel + "/" + layout + "/S:" + std::to_string(s), [=](benchmark::State& st) {
          Model m;
          const std::string l = layout;
          if (l == "prior" || l == "one")
            bench::build_elementwise_prior(m, kernel, l == "one" ? std::vector<Index>{} : std::vector<Index>{1000});
          else if (l == "small")
            bench::build_elementwise_likelihood(m, kernel, {3, 4}, {3, 1});
          else
            for (const Layout& lay : layouts)
              if (l == lay.name) bench::build_elementwise_likelihood(m, kernel, lay.shape, lay.param_shape);
          run_kernel(st, m, s);
        });
      }
  for (int threads : {1, 2}) {
    for (Index n : logistic_n) register_read(std::size_t(n * k) * 8, threads);
    register_read(std::size_t(512) << 20, threads);
    register_square_gemm(square, threads);
  }
  for (Index p : {1, 8, 32}) register_glm_shape_gemm(k, p);
  register_rows_in_l1(k);
  register_rows_in_l1_float32(k);
  register_logistic_terms();
  // The serial threshold sweep: only with FASTVI_GLM_PARALLEL_WORK set (0 makes every GLM
  // evaluation with more than one chunk parallel), comparing 1 and 2 threads as the work grows.
  if (std::getenv("FASTVI_GLM_PARALLEL_WORK"))
    for (Index s : {1, 8})
      for (Index n : {1024, 2048, 4096, 8192, 16384, 32768})
        for (int threads : {1, 2}) register_glm("threshold", "bernoulli_logit_glm", n, k, s, threads, StepKind::Grad);

  // The row-kernel crossover (glm_rows::max_draws): only with FASTVI_GLM_FUSED_MAX_DRAWS set
  // (0: the GEMM path for every S; 8: the row kernel up to S = 8), run once with each, compared.
  if (std::getenv("FASTVI_GLM_FUSED_MAX_DRAWS"))
    for (Index kk : {10, 25, 50, 100})
      for (Index s : {1, 2, 4, 8})
        for (Index n : {10000, 100000}) register_glm("crossover", "bernoulli_logit_glm", n, kk, s, 1, StepKind::Grad);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  CollectingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  print_roofline(reporter.results, k, logistic_n, logistic_s_small, square);
  benchmark::Shutdown();
  return 0;
}
