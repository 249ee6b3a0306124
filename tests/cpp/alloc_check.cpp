// Checks that nothing allocates inside the optimisation loop. Exits non-zero on any failure.
//
// 1. The GLM kernels (categorical_logit_glm too, C up to 40): evaluate() neither allocates nor
//    forks threads it was not asked for, and 1 and 2 threads give bit-identical results, over a
//    grid of shapes (including K above the 240-column GEMM tile and S above the 32-draw panel);
//    likewise (1b) every element-wise kernel as a likelihood with scalar, vector, broadcast and
//    small parameters, and (1c) the categorical, ordinal, multinomial and multivariate kernels.
// 1'. With FASTVI_ALLOC_CHECK_DGEMM=<shared library> set (tests/test_alloc_check.py passes scipy's
//    OpenBLAS), section 1's GLM kernels again, their GEMM path calling that library's dgemm
//    (fastvi/blas.hpp; symbol scipy_dgemm_ or dgemm_), as fastvi's Python package has them, and
//    whole steps (section 2) of GLM and X @ beta expression models with 8 to 40 draws.
// 2. The whole step, ElboEstimator::estimate + Adam::step, for the mean-field, full-rank and
//    low-rank families (both gradient estimators, with and without a preconditioner, D up to
//    1,000), on GLM models, element-wise models (normal; student_t with vector and beta with
//    broadcast parameters), a model with every vector transform (simplex, ordered, ...) and
//    expression models (matvec, binary, unary, gather, sum, segmented
//    (log_sum_exp, softmax, cumsum), concat and matmul nodes, and Model.factor's target kernel;
//    GP regressions with exp_quad_cov, add_diag and cholesky nodes into multi_normal_cholesky, and
//    with multi_normal on the node-built covariance, at N = 60;
//    N x K up to 10,000 x 50 and 3,000 x 300, sizes at which an untiled X @ beta would
//    heap-allocate GEMM buffers), with 1 and 2 threads and several draw counts (every S from 1 to
//    40 for two expression models): zero heap allocations over the counted steps, after two
//    warm-up steps.
// 3. run_fit: nothing allocates inside the loop once it is past its warm-up and the stopping rule's first check
//
// How: this executable defines malloc & co. (forwarding to glibc's __libc_* versions), so every
// heap allocation in the process, from Eigen, libstdc++ (operator new calls malloc) or libgomp,
// passes through a counter that is switched on around the code under test. It also wraps
// libgomp's GOMP_parallel to record each parallel region the kernel opens and its thread count:
// Eigen's own GEMM threading would show up there as extra regions.
//
// Built with -DFASTVI_BUILD_TESTS=ON (or FASTVI_BUILD_BENCHMARKS); tests/test_alloc_check.py builds
// and runs it, or run `ctest` in the build tree, or the executable.
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "fastvi/adam.hpp"
#include "fastvi/blas.hpp"
#include "fastvi/broadcast.hpp"
#include "fastvi/elbo.hpp"
#include "fastvi/fit.hpp"
#include "models.hpp"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
std::atomic<long> g_regions{0};
std::atomic<unsigned> g_max_region_threads{0};
void count() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(size_t a, size_t b) {
  count();
  return __libc_calloc(a, b);
}
void* realloc(void* p, size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) {
  count();
  return __libc_memalign(align, n);
}
int posix_memalign(void** out, size_t align, size_t n) {
  count();
  *out = __libc_memalign(align, n);
  return *out ? 0 : 12;  // ENOMEM
}

using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);
void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags) {
  static GompParallel real = reinterpret_cast<GompParallel>(dlsym(RTLD_NEXT, "GOMP_parallel"));
  if (g_counting.load(std::memory_order_relaxed)) {
    g_regions.fetch_add(1);
    unsigned prev = g_max_region_threads.load();
    while (num_threads > prev && !g_max_region_threads.compare_exchange_weak(prev, num_threads)) {
    }
  }
  real(fn, data, num_threads, flags);
}
}

namespace {

using namespace fastvi;

int failures = 0;

// What evaluating a model's first factor does: its evaluate alone, then the whole
// Model::log_density around it with 1 and 2 threads, at random points, counting heap allocations
// and parallel regions.
struct Evaluation {
  long allocs = 0, regions = 0;
  unsigned max_threads = 0;
  bool identical = false;  // 1 and 2 threads, bit for bit
  bool finite = false;
};

Evaluation evaluate_first_factor(const Model& model, Index draws) {
  Matrix zeta(model.dim(), draws), grad1(model.dim(), draws), grad2(model.dim(), draws);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (Index i = 0; i < zeta.size(); ++i) zeta.data()[i] = normal(rng);
  Vector lp1(draws), lp2(draws);
  ModelWorkspace ws;
  model.prepare(ws, draws, 2);
  model.log_density(zeta, ws, lp1, grad1, 2);  // warm-up: OpenMP thread pool, ICVs

  const Kernel& kernel_impl = *model.factors()[0].impl;
  ws.grad_theta.setZero();
  Vector lp_kernel = Vector::Zero(draws);
  Batch batch{ws.theta.data(),
              ws.grad_theta.data(),
              lp_kernel.data(),
              ws.theta.rows(),
              draws,
              2,
              ws.scratch.data() + ws.factor_scratch[0]};
  g_allocs = 0;
  g_regions = 0;
  g_max_region_threads = 0;
  g_counting = true;
  kernel_impl.evaluate(batch);
  model.log_density(zeta, ws, lp1, grad1, 1);
  model.log_density(zeta, ws, lp2, grad2, 2);
  g_counting = false;
  Evaluation e;
  e.allocs = g_allocs;
  e.regions = g_regions;
  e.max_threads = g_max_region_threads;
  e.identical = std::memcmp(lp1.data(), lp2.data(), sizeof(double) * size_t(draws)) == 0 &&
                std::memcmp(grad1.data(), grad2.data(), sizeof(double) * size_t(grad1.size())) == 0;
  e.finite = lp1.allFinite() && grad1.allFinite();
  return e;
}

// c > 0: categorical_logit_glm with c categories; else the vector GLM `kernel`.
void check(const std::string& kernel, Index n, Index k, Index draws, bool beta_param, Index c = 0) {
  Model model;
  if (c > 0)
    bench::build_categorical_glm_model(model, n, k, c, beta_param);
  else
    bench::build_glm_model(model, kernel, n, k, beta_param);
  const Evaluation e = evaluate_first_factor(model, draws);
  // Serial evaluations open no parallel region; a parallel one opens exactly one, of 2 threads.
  // Only the two evaluations asked for 2 threads may do so, both or neither (same decision), and
  // any GEMM that Eigen threaded by itself would add regions.
  const bool ok =
      e.allocs == 0 && (e.regions == 0 || (e.regions == 2 && e.max_threads == 2)) && e.identical && e.finite;
  if (!ok) ++failures;
  std::printf("%-4s %-22s N=%6ld K=%4ld C=%3ld S=%3ld beta=%-5s  mallocs=%ld %-8s identical=%d%s\n", ok ? "ok" : "FAIL",
              kernel.c_str(), long(n), long(k), long(c), long(draws), beta_param ? "param" : "data", e.allocs,
              e.regions ? "parallel" : "serial", int(e.identical), e.finite ? "" : " NON-FINITE");
}

// ---- 1b. The element-wise kernels --------------------------------------------------------------

// Every registered element-wise kernel as a likelihood (bench::build_elementwise_likelihood): its
// evaluate and Model::log_density allocate nothing and open no parallel region, and 1 and 2
// threads give bit-identical results.
void check_elementwise(const std::string& kernel, const char* layout, const std::vector<Index>& shape,
                       const std::vector<Index>& param_shape, Index draws) {
  Model model;
  bench::build_elementwise_likelihood(model, kernel, shape, param_shape);
  const Evaluation e = evaluate_first_factor(model, draws);
  const bool ok = e.allocs == 0 && e.regions == 0 && e.identical && e.finite;
  if (!ok) ++failures;
  std::printf("%-4s %-16s %-9s S=%3ld  mallocs=%ld regions=%ld identical=%d%s\n", ok ? "ok" : "FAIL", kernel.c_str(),
              layout, long(draws), e.allocs, e.regions, int(e.identical), e.finite ? "" : " NON-FINITE");
}

// The same likelihood made row-wise along its leading axis (rows=0), evaluated on a minibatch of
// B rows (one repeated): Model::log_density allocates nothing, opens no parallel region, and 1
// and 2 threads agree bit for bit.
void check_elementwise_rows(const std::string& kernel, const char* layout, const std::vector<Index>& shape,
                            const std::vector<Index>& param_shape, Index draws) {
  Model model;
  bench::build_elementwise_likelihood(model, kernel, shape, param_shape, 5, Index(0));
  const Index n = model.data_rows(), b = std::max<Index>(n / 4, 2);
  std::vector<Index> rows(static_cast<size_t>(b));
  for (Index i = 0; i < b; ++i) rows[size_t(i)] = (i * 7 + 3) % n;
  rows.back() = rows.front();
  Matrix zeta(model.dim(), draws), grad1(model.dim(), draws), grad2(model.dim(), draws);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (Index i = 0; i < zeta.size(); ++i) zeta.data()[i] = normal(rng);
  Vector lp1(draws), lp2(draws);
  ModelWorkspace ws;
  model.prepare(ws, draws, 2, b);
  ws.rows = rows.data();
  ws.row_weight = double(n) / double(b);
  model.log_density(zeta, ws, lp1, grad1, 2);  // warm-up
  g_allocs = 0;
  g_regions = 0;
  g_counting = true;
  model.log_density(zeta, ws, lp1, grad1, 1);
  model.log_density(zeta, ws, lp2, grad2, 2);
  g_counting = false;
  const bool identical = std::memcmp(lp1.data(), lp2.data(), sizeof(double) * size_t(draws)) == 0 &&
                         std::memcmp(grad1.data(), grad2.data(), sizeof(double) * size_t(grad1.size())) == 0;
  const bool finite = lp1.allFinite() && grad1.allFinite();
  const bool ok = g_allocs == 0 && g_regions == 0 && identical && finite;
  if (!ok) ++failures;
  std::printf("%-4s %-16s %-9s rows S=%3ld  mallocs=%ld regions=%ld identical=%d%s\n", ok ? "ok" : "FAIL",
              kernel.c_str(), layout, long(draws), long(g_allocs), long(g_regions), int(identical),
              finite ? "" : " NON-FINITE");
}

// ---- 1c. Categorical, ordinal and multivariate kernels ------------------------------------------

// A likelihood of one of these kernels on parameters (and data where a parameter at a random
// point would leave the support: ordered cutpoints, simplexes): evaluate and log_density allocate
// nothing, stay serial and agree bit for bit across thread counts.
void check_structured(const std::string& kernel, bool shared, Index draws) {
  Model model;
  const Index n = 200, c = 4;
  Vector y(n);
  for (Index i = 0; i < n; ++i) y[i] = double((i * 7) % c);
  std::vector<Operand> ops;
  if (kernel == "categorical_logit") {
    model.add_param("logits", shared ? std::vector<Index>{c} : std::vector<Index>{n, c}, -kInf, kInf);
    ops = {bench::data_operand("y", {n}, y), bench::param_operand("logits", model, "logits")};
  } else if (kernel == "multinomial_logit") {  // y (N, C) counts; gamma (C,) or (N, C)
    model.add_param("gamma", shared ? std::vector<Index>{c} : std::vector<Index>{n, c}, -kInf, kInf);
    Vector counts(n * c);
    for (Index i = 0; i < counts.size(); ++i) counts[i] = double((i * 5) % 7);
    ops = {bench::data_operand("y", {n, c}, counts), bench::param_operand("gamma", model, "gamma")};
  } else if (kernel == "ordered_logistic" || kernel == "ordered_probit") {
    model.add_param("eta", shared ? std::vector<Index>{} : std::vector<Index>{n}, -kInf, kInf);
    Vector cuts(c - 1);
    cuts << -1.0, 0.0, 1.0;
    ops = {bench::data_operand("y", {n}, y), bench::param_operand("eta", model, "eta"),
           bench::data_operand("cutpoints", {c - 1}, cuts)};
  } else if (kernel == "dirichlet") {
    const Index rows = 10;
    model.add_param("alpha", shared ? std::vector<Index>{c} : std::vector<Index>{rows, c}, 0.0, kInf);
    ops = {bench::data_operand("theta", {rows, c}, Vector::Constant(rows * c, 1.0 / double(c))),
           bench::param_operand("alpha", model, "alpha")};
  } else if (kernel == "multi_normal") {  // y data, mu a parameter, Sigma data or an add_diag node
    const Index k = 3, rows = 50;
    model.add_param("mu", {k}, -kInf, kInf);
    Vector yy(rows * k);
    for (Index i = 0; i < yy.size(); ++i) yy[i] = std::sin(double(i));
    Operand sigma;
    if (shared) {
      Vector eye = Vector::Zero(k * k);
      for (Index i = 0; i < k; ++i) eye[i * k + i] = 1.0;
      sigma = bench::data_operand("Sigma", {k, k}, eye);
    } else {  // A + 5 I, A a (K, K) parameter near 0: its symmetric part is positive-definite
      const Index a = model.add_param("A", {k, k}, -kInf, kInf);
      const Index node = model.add_node(make_add_diag(model.block_operand("K", a), bench::scalar_operand("d", 5.0)),
                                        "A + 5 I", {k, k}, -kInf, kInf);
      sigma = model.block_operand("Sigma", node);
    }
    ops = {bench::data_operand("y", {rows, k}, yy), bench::param_operand("mu", model, "mu"), std::move(sigma)};
  } else {  // multi_normal_cholesky: y data, mu and L parameters
    const Index k = 3, rows = 50;
    model.add_param("mu", shared ? std::vector<Index>{k} : std::vector<Index>{rows, k}, -kInf, kInf);
    model.add_param("L", {k, k}, -kInf, kInf);
    Vector yy(rows * k);
    for (Index i = 0; i < yy.size(); ++i) yy[i] = std::sin(double(i));
    ops = {bench::data_operand("y", {rows, k}, yy), bench::param_operand("mu", model, "mu"),
           bench::param_operand("L", model, "L")};
  }
  model.add_factor(kernel, std::move(ops), kernel);
  const Evaluation e = evaluate_first_factor(model, draws);
  const bool ok = e.allocs == 0 && e.regions == 0 && e.identical && e.finite;
  if (!ok) ++failures;
  std::printf("%-4s %-22s %-8s S=%3ld  mallocs=%ld regions=%ld identical=%d%s\n", ok ? "ok" : "FAIL", kernel.c_str(),
              shared ? "shared" : "per-row", long(draws), e.allocs, e.regions, int(e.identical),
              e.finite ? "" : " NON-FINITE");
}

// The counters themselves: one heap allocation and one 2-thread region must be seen.
bool self_test() {
  std::atomic<int> members{0};
#pragma omp parallel num_threads(2)
  members.fetch_add(1);  // warm-up: libgomp allocates its thread pool on the first region
  g_allocs = 0;
  g_regions = 0;
  g_max_region_threads = 0;
  g_counting = true;
  double* volatile p = new double[3];
  delete[] p;
#pragma omp parallel num_threads(2)
  members.fetch_add(1);
  g_counting = false;
  const bool ok = g_allocs == 1 && g_regions == 1 && g_max_region_threads == 2 && members > 0;
  std::printf("self-test of the counters: %s (mallocs=%ld regions=%ld)\n", ok ? "ok" : "FAIL", long(g_allocs),
              long(g_regions));
  return ok;
}

// ---- 2. The whole step --------------------------------------------------------------------

// An expression model: logistic regression written with nodes, plus a hierarchical prior on beta.
//   lin = X @ beta + alpha;  y ~ bernoulli_logit(lin);  s = exp(log_s);  beta ~ normal(0, s);
//   sum(beta) ~ normal(0, 10);  beta[0:3] ~ normal(0, 1);  log_s ~ normal(0, 1)
void build_expression_model(Model& m, Index n, Index k) {
  Vector x, y;
  bench::simulate_glm("bernoulli_logit_glm", n, k, 3, x, y);
  m.add_param("alpha", {}, -kInf, kInf);
  m.add_param("beta", {k}, -kInf, kInf);
  m.add_param("log_s", {}, -kInf, kInf);
  const Index beta_id = 1, alpha_id = 0, log_s_id = 2;
  const Index eta = m.add_node(make_matvec(Eigen::Map<const RowMatrix>(x.data(), n, k), m.block_operand("v", beta_id)),
                               "X @ beta", {n}, -kInf, kInf);
  std::vector<Operand> ops{m.block_operand("a", eta), m.block_operand("b", alpha_id)};
  const std::vector<Index> shape = broadcast_shape(ops, "lin");
  for (auto& o : ops) set_broadcast(o, shape);
  const Index lin =
      m.add_node(make_binary(BinaryOp::Add, std::move(ops[0]), std::move(ops[1]), n), "lin", shape, -kInf, kInf);
  m.add_factor("bernoulli_logit", {bench::data_operand("y", {n}, y), m.block_operand("logit", lin)}, "likelihood");
  const Index s = m.add_node(make_unary(UnaryOp::Exp, m.block_operand("a", log_s_id)), "exp(log_s)", {}, 0.0, kInf);
  m.add_factor("normal",
               {m.block_operand("y", beta_id), bench::scalar_operand("loc", 0.0), m.block_operand("scale", s)},
               "prior beta");
  const Index total = m.add_node(make_sum(m.block_operand("a", beta_id)), "sum(beta)", {}, -kInf, kInf);
  m.add_factor("normal",
               {m.block_operand("y", total), bench::scalar_operand("loc", 0.0), bench::scalar_operand("scale", 10.0)},
               "prior sum");
  const Index head = m.add_node(make_gather(m.block_operand("a", beta_id), {0, 1, 2}), "beta[0:3]", {3}, -kInf, kInf);
  m.add_factor("normal",
               {m.block_operand("y", head), bench::scalar_operand("loc", 0.0), bench::scalar_operand("scale", 1.0)},
               "prior head");
  m.add_factor("normal",
               {m.block_operand("y", log_s_id), bench::scalar_operand("loc", 0.0), bench::scalar_operand("scale", 1.0)},
               "prior log_s");
  // The nodes of issue 11 and Model.factor's target: reductions over beta, lgamma(s), a power, a
  // concatenation and a product of two parameter vectors.
  //   c = [log_sum_exp(beta), lgamma(s), cumsum(beta) @ softmax(beta)];  factor(-square(c));
  //   factor(softmax(beta) ** 1.5);  factor(-square(log_add_exp(beta, cumsum(beta))))
  std::vector<Index> all(static_cast<size_t>(k));
  for (Index i = 0; i < k; ++i) all[size_t(i)] = i;
  const Index lse = m.add_node(make_segmented(SegmentOp::LogSumExp, m.block_operand("a", beta_id), all, {0, k}),
                               "log_sum_exp(beta)", {}, -kInf, kInf);
  const Index sm = m.add_node(make_segmented(SegmentOp::Softmax, m.block_operand("a", beta_id), all, {0, k}),
                              "softmax(beta)", {k}, 0.0, 1.0);
  const Index cs = m.add_node(make_segmented(SegmentOp::CumSum, m.block_operand("a", beta_id), all, {0, k}),
                              "cumsum(beta)", {k}, -kInf, kInf);
  const Index lg = m.add_node(make_unary(UnaryOp::LGamma, m.block_operand("a", s)), "lgamma(s)", {}, -kInf, kInf);
  const Index dot =
      m.add_node(make_matmul(m.block_operand("a", cs), m.block_operand("b", sm), 1, k, 1), "dot", {}, -kInf, kInf);
  const Index c =
      m.add_node(make_concat({m.block_operand("a", lse), m.block_operand("b", lg), m.block_operand("c", dot)},
                             {0, 1, 2}, {0, 0, 0}),
                 "c", {3}, -kInf, kInf);
  const Index c2 = m.add_node(make_unary(UnaryOp::Square, m.block_operand("a", c)), "square(c)", {3}, 0.0, kInf);
  const Index neg = m.add_node(make_unary(UnaryOp::Neg, m.block_operand("a", c2)), "-square(c)", {3}, -kInf, 0.0);
  m.add_bound_factor("factor", make_target(m.block_operand("expr", neg)), "factor c");
  std::vector<Operand> pow_ops{m.block_operand("a", sm), bench::scalar_operand("b", 1.5)};
  const std::vector<Index> pow_shape = broadcast_shape(pow_ops, "pow");
  for (auto& o : pow_ops) set_broadcast(o, pow_shape);
  const Index pw = m.add_node(make_binary(BinaryOp::Pow, std::move(pow_ops[0]), std::move(pow_ops[1]), k),
                              "softmax(beta) ** 1.5", pow_shape, 0.0, 1.0);
  m.add_bound_factor("factor", make_target(m.block_operand("expr", pw)), "factor pow");
  // factor(-square(log_add_exp(beta, cumsum(beta)))): the vectorised log_add_exp path from K = 16
  const Index lae =
      m.add_node(make_binary(BinaryOp::LogAddExp, m.block_operand("a", beta_id), m.block_operand("b", cs), k),
                 "log_add_exp(beta, cumsum(beta))", {k}, -kInf, kInf);
  const Index lae2 = m.add_node(make_unary(UnaryOp::Square, m.block_operand("a", lae)), "square(lae)", {k}, 0.0, kInf);
  const Index lae3 = m.add_node(make_unary(UnaryOp::Neg, m.block_operand("a", lae2)), "-square(lae)", {k}, -kInf, 0.0);
  m.add_bound_factor("factor", make_target(m.block_operand("expr", lae3)), "factor log_add_exp");
  // factor(logp("skew_normal", beta, scale=s, alpha=0.5)): fv.logp's per-element kernel node,
  // whose thread-local buffers must be sized by the warm-up step and never again
  const Index kl = m.add_kernel_logp(
      "skew_normal", {m.block_operand("y", beta_id), m.block_operand("scale", s), bench::scalar_operand("alpha", 0.5)},
      "logp(skew_normal)");
  m.add_bound_factor("factor", make_target(m.block_operand("expr", kl)), "factor logp");
}

// GP regression, hyperparameters fitted: y ~ MultiNormal(0, K + sigma^2 I) with
// K = exp_quad_cov(x, alpha, rho), as multi_normal_cholesky(L = cholesky(add_diag(K, square(sigma))))
// or as multi_normal(Sigma = add_diag(K, square(sigma))); half-normal priors on the three.
void build_gp_model(Model& m, Index n, bool cholesky) {
  RowMatrix x(n, 1);
  Vector y(n);
  for (Index i = 0; i < n; ++i) {
    x(i, 0) = 10.0 * double(i) / double(n);
    y[i] = std::sin(x(i, 0)) + 0.1 * std::cos(7.0 * double(i));
  }
  const Index alpha = m.add_param("alpha", {}, 0.0, kInf);
  const Index rho = m.add_param("rho", {}, 0.0, kInf);
  const Index sigma = m.add_param("sigma", {}, 0.0, kInf);
  for (const char* p : {"alpha", "rho", "sigma"})
    m.add_factor("half_normal", {bench::param_operand("y", m, p), bench::scalar_operand("scale", 1.0)},
                 std::string("prior ") + p);
  const Index eq = m.add_node(make_exp_quad_cov(x, m.block_operand("alpha", alpha), m.block_operand("rho", rho)), "K",
                              {n, n}, 0.0, kInf);
  const Index s2 = m.add_node(make_unary(UnaryOp::Square, m.block_operand("a", sigma)), "sigma^2", {}, 0.0, kInf);
  const Index cov =
      m.add_node(make_add_diag(m.block_operand("K", eq), m.block_operand("d", s2)), "K + sigma^2 I", {n, n}, 0.0, kInf);
  if (cholesky) {
    const Index l = m.add_node(make_cholesky(m.block_operand("K", cov)), "L", {n, n}, -kInf, kInf);
    m.add_factor("multi_normal_cholesky",
                 {bench::data_operand("y", {n}, y), bench::scalar_operand("mu", 0.0), m.block_operand("L", l)},
                 "likelihood");
  } else {
    m.add_factor("multi_normal",
                 {bench::data_operand("y", {n}, y), bench::scalar_operand("mu", 0.0), m.block_operand("Sigma", cov)},
                 "likelihood");
  }
}

// Every vector transform, with normal factors on its values (a batch of two simplexes, and
// Cholesky factors of 4 x 4 matrices).
void build_vector_transform_model(Model& m) {
  const std::vector<std::pair<std::string, std::vector<Index>>> params = {{"simplex", {2, 5}},
                                                                          {"ordered", {4}},
                                                                          {"positive_ordered", {3}},
                                                                          {"cholesky_corr", {4, 4}},
                                                                          {"cholesky_cov", {4, 4}}};
  for (const auto& [transform, shape] : params) {
    const Index id = m.add_param(transform, shape, transform);
    m.add_factor("normal",
                 {m.block_operand("y", id), bench::scalar_operand("loc", 0.1), bench::scalar_operand("scale", 1.0)},
                 "prior " + transform);
  }
}

std::unique_ptr<Model> make_model(const std::string& name) {
  auto m = std::make_unique<Model>();
  if (name == "seed (normal)")
    bench::build_seed_model(*m);
  else if (name == "logistic glm")
    bench::build_glm_model(*m, "bernoulli_logit_glm", 20000, 20);
  else if (name == "linreg glm")
    bench::build_glm_model(*m, "normal_id_glm", 1000, 10);
  else if (name == "neg-binomial glm")
    bench::build_glm_model(*m, "neg_binomial_2_log_glm", 2000, 10);
  else if (name == "categorical glm")
    bench::build_categorical_glm_model(*m, 2000, 10, 4);
  else if (name == "expression")
    build_expression_model(*m, 2000, 8);
  // Big enough that an untiled X @ beta (N x S GEMM) would put Eigen's packing buffers on the heap.
  else if (name == "expression big")
    build_expression_model(*m, 10000, 50);
  // K above a 240-column tile, so X @ beta is cut along K too.
  else if (name == "expression wide")
    build_expression_model(*m, 3000, 300);
  else if (name.rfind("gaussian D=", 0) == 0)
    bench::build_gaussian_target(*m, std::stol(name.substr(11)));
  // Element-wise kernels on their vectorised path: vector parameters, and gathered ones.
  else if (name == "student_t vector")
    bench::build_elementwise_likelihood(*m, "student_t", {1000}, {1000});
  else if (name == "beta broadcast")
    bench::build_elementwise_likelihood(*m, "beta", {100, 10}, {100, 1});
  else if (name == "vector transforms")
    build_vector_transform_model(*m);
  else if (name == "gp cholesky")
    build_gp_model(*m, 60, true);
  else if (name == "gp multi_normal")
    build_gp_model(*m, 60, false);
  return m;
}

std::unique_ptr<GaussianFamily> make_test_family(const std::string& family, Index dim) {
  return make_family(family, dim, family == "lowrank" ? std::min<Index>(dim, 3) : 0);
}

// A preconditioner the family accepts: diagonal for every family, lower-triangular for full-rank.
Preconditioner make_preconditioner(Index dim, bool dense) {
  Preconditioner p;
  p.shift = Vector::Constant(dim, 0.05);
  if (dense) {
    p.lower = Matrix::Identity(dim, dim);
    for (Index j = 0; j < dim; ++j)
      for (Index i = j + 1; i < dim; ++i) p.lower(i, j) = 0.01 / double(1 + i - j);
  } else {
    p.diagonal = Vector::Constant(dim, 0.9);
  }
  return p;
}

// batch > 0: minibatches of that many rows, with the control variate if `cv` (whose reference
// is re-evaluated on every row inside the counted steps too).
void check_step(const std::string& model_name, const std::string& family_name, Index draws, int threads,
                GradientEstimator gradient, const std::string& precond, Index batch = 0, bool cv = false) {
  auto model = make_model(model_name);
  auto family = make_test_family(family_name, model->dim());
  Preconditioner p;
  if (precond != "none") p = make_preconditioner(model->dim(), precond == "dense");
  ElboEstimator estimator(*model, *family, draws, gradient, &p, threads, batch, cv);
  Adam adam(family->num_params());
  Vector phi(family->num_params()), grad(family->num_params());
  family->initialise(phi, Vector::Zero(model->dim()), 0.2);
  double elbo = 0.0;
  std::uint64_t step = 0;
  bool finite = true;
  auto one_step = [&] {
    if (cv && step % 2 == 0 && !estimator.set_reference(phi.head(model->dim()), threads)) finite = false;
    const bool ok = estimator.estimate(phi, 11, Stream::Optimise, step++, grad, elbo, threads);
    if (ok)
      adam.step(phi, grad, 0.01);
    else
      finite = false;
  };
  one_step();  // warm-up: OpenMP thread pool, first-touch of any lazily sized scratch
  one_step();
  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < 3; ++i) one_step();
  g_counting = false;
  const long allocs = g_allocs;
  const bool ok = allocs == 0 && finite;
  if (!ok) ++failures;
  std::printf("%-4s step  %-16s %-9s S=%3ld threads=%d %-6s precond=%-5s batch=%ld%s  mallocs=%ld%s\n",
              ok ? "ok" : "FAIL", model_name.c_str(), family_name.c_str(), long(draws), threads,
              gradient == GradientEstimator::StickingTheLanding ? "stl" : "closed", precond.c_str(), long(batch),
              cv ? " cv" : "", allocs, finite ? "" : " NON-FINITE");
}

// ---- 3. run_fit: allocations do not grow with the number of steps ------------------------------

// Mallocs inside run_fit's loop between the end of step `from` and the end of its last step (read
// by the monitor, which the loop calls at every window end): past the warm-up and the stopping
// rule's first check, every window and every check of the rule must reuse what is there. What a
// fit allocates once at its start and end (its result, a message that says what was still moving)
// is outside this span.
long loop_allocations(const std::string& model_name, const std::string& family_name, Index from, Index steps,
                      Index batch) {
  auto model = make_model(model_name);
  auto family = make_test_family(family_name, model->dim());
  FitOptions opt;
  opt.steps = steps;
  opt.tol = 0.0;  // never converge: every run takes exactly `steps` steps
  opt.draws = 4;
  opt.threads = 2;
  opt.batch_size = batch;  // (with the control variate: FitOptions' default)
  Vector phi0(family->num_params());
  family->initialise(phi0, Vector::Zero(model->dim()), 0.2);
  long at_from = -1, at_end = -1;
  const Monitor monitor = [&](const Progress& p) {
    if (p.step == from) at_from = g_allocs;
    if (p.step == steps) at_end = g_allocs;
    return true;
  };
  g_allocs = 0;
  g_counting = true;
  const FitResult r = run_fit(*model, *family, phi0, opt, monitor);
  g_counting = false;
  return at_from < 0 || at_end < 0 ? -1 : at_end - at_from;
}

void check_fit(const std::string& model_name, const std::string& family_name, Index batch = 0) {
  const long allocs = loop_allocations(model_name, family_name, 1500, 6000, batch);
  const bool ok = allocs == 0;
  if (!ok) ++failures;
  std::printf("%-4s fit   %-16s %-9s batch=%-5ld mallocs in the loop from step 1,500 to 6,000: %ld\n",
              ok ? "ok" : "FAIL", model_name.c_str(), family_name.c_str(), long(batch), allocs);
}

}  // namespace

// Section 1's vector GLM kernels over their grid of shapes.
void check_vector_glms() {
  for (const char* kernel : {"normal_id_glm", "bernoulli_logit_glm", "poisson_log_glm", "neg_binomial_2_log_glm"}) {
    for (Index draws : {1, 3, 8, 32, 40}) {
      check(kernel, 10000, 50, draws, true);
      check(kernel, 3000, 5, draws, true);
      check(kernel, 20000, 20, draws, false);
    }
    check(kernel, 1000, 300, 8, true);
    check(kernel, 800, 1000, 33, true);
    check(kernel, 7, 3, 2, true);
  }
}

// Section 1': the dgemm of the library FASTVI_ALLOC_CHECK_DGEMM names, or nullptr (reported).
blas::Dgemm external_dgemm() {
  const char* path = std::getenv("FASTVI_ALLOC_CHECK_DGEMM");
  if (!path || !*path) return nullptr;
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::printf("FAIL FASTVI_ALLOC_CHECK_DGEMM=%s: %s\n", path, dlerror());
    ++failures;
    return nullptr;
  }
  for (const char* symbol : {"scipy_dgemm_", "dgemm_"})
    if (void* fn = dlsym(lib, symbol)) return reinterpret_cast<blas::Dgemm>(fn);
  std::printf("FAIL FASTVI_ALLOC_CHECK_DGEMM=%s: no scipy_dgemm_ or dgemm_ in it\n", path);
  ++failures;
  return nullptr;
}

int main() {
  if (!self_test()) return 1;
  std::printf("-- 1. GLM kernels\n");
  check_vector_glms();
  if (blas::Dgemm dgemm = external_dgemm()) {
    std::printf("-- 1'. GLM kernels through %s's dgemm\n", std::getenv("FASTVI_ALLOC_CHECK_DGEMM"));
    blas::set_dgemm(dgemm);
    check_vector_glms();
    // Whole steps of GLM and X @ beta expression models with enough draws for the BLAS, on full
    // data and on minibatches (gathered rows), with and without the control variate.
    const auto stl = GradientEstimator::StickingTheLanding;
    for (const char* model : {"logistic glm", "linreg glm", "expression", "expression big", "expression wide"})
      for (Index draws : {8, 33, 40})
        for (int threads : {1, 2}) check_step(model, "meanfield", draws, threads, stl, "none");
    for (bool cv : {false, true}) check_step("logistic glm", "meanfield", 33, 2, stl, "diag", 500, cv);
    blas::set_dgemm(nullptr);
  }
  // categorical_logit_glm: C below and above the 32-column product tile, K above the 240-column
  // tile, S across panels (32 / C draws each), beta as data.
  for (Index draws : {1, 3, 8, 16, 33}) {
    check("categorical_logit_glm", 10000, 10, draws, true, 4);
    check("categorical_logit_glm", 3000, 5, draws, true, 3);
    check("categorical_logit_glm", 2000, 20, draws, true, 40);
    check("categorical_logit_glm", 20000, 20, draws, false, 4);
  }
  check("categorical_logit_glm", 1000, 300, 8, true, 5);
  check("categorical_logit_glm", 7, 3, 2, true, 2);
  std::printf("-- 1b. Element-wise kernels\n");
  for (const std::string& kernel : bench::elementwise_kernels())
    for (Index draws : {1, 8, 33}) {
      check_elementwise(kernel, "scalar", {1000}, {}, draws);              // vectorised, scalar parameters
      check_elementwise(kernel, "vector", {1000}, {1000}, draws);          // vectorised, vector parameters
      check_elementwise(kernel, "broadcast", {100, 10}, {100, 1}, draws);  // vectorised, gathered
      check_elementwise(kernel, "small", {3, 4}, {3, 1}, draws);           // element by element
    }
  std::printf("-- 1b'. Element-wise kernels on minibatches (rows=0)\n");
  for (const std::string& kernel : bench::elementwise_kernels())
    for (Index draws : {1, 8}) {
      check_elementwise_rows(kernel, "scalar", {1000}, {}, draws);
      check_elementwise_rows(kernel, "vector", {1000}, {1000}, draws);
      check_elementwise_rows(kernel, "broadcast", {100, 30}, {100, 1}, draws);  // runs across rows
      check_elementwise_rows(kernel, "long rows", {8, 700}, {700}, draws);      // runs within a row
    }
  std::printf("-- 1c. Categorical, ordinal and multivariate kernels\n");
  for (const char* kernel : {"categorical_logit", "ordered_logistic", "ordered_probit", "multinomial_logit",
                             "dirichlet", "multi_normal_cholesky", "multi_normal"})
    for (bool shared : {true, false})
      for (Index draws : {1, 8, 33}) check_structured(kernel, shared, draws);
  std::printf("-- 2. ElboEstimator::estimate + Adam::step\n");
  const auto stl = GradientEstimator::StickingTheLanding, closed = GradientEstimator::ClosedFormEntropy;
  for (const char* model :
       {"seed (normal)", "logistic glm", "linreg glm", "neg-binomial glm", "categorical glm", "expression",
        "gaussian D=10", "student_t vector", "beta broadcast", "vector transforms", "gp cholesky", "gp multi_normal"})
    for (const char* family : {"meanfield", "fullrank", "lowrank"})
      for (Index draws : {1, 8, 33})
        for (int threads : {1, 2}) check_step(model, family, draws, threads, stl, "none");
  for (const char* model : {"gaussian D=100", "gaussian D=1000"})
    for (const char* family : {"meanfield", "fullrank", "lowrank"})
      for (Index draws : {1, 8, 40})
        for (auto gradient : {stl, closed}) check_step(model, family, draws, 1, gradient, "none");
  for (const char* model : {"expression big", "expression wide"})
    for (const char* family : {"meanfield", "fullrank", "lowrank"})
      for (Index draws : {8, 33, 40})
        for (int threads : {1, 2}) check_step(model, family, draws, threads, stl, "none");
  // Every S up to 40: whether one unblocked GEMM allocates depends on Eigen's blocking heuristics,
  // at some S only (a plain N x K times K x S product: from S = 2 at K = 50, at S = 20 and 33-40
  // at N = 10,000, K = 8).
  for (const char* model : {"expression", "expression big"})
    for (Index draws = 1; draws <= 40; ++draws) check_step(model, "meanfield", draws, 1, stl, "none");
  for (const char* model : {"logistic glm", "gaussian D=1000"}) {
    for (const char* family : {"meanfield", "fullrank", "lowrank"})
      for (Index draws : {1, 8}) check_step(model, family, draws, 2, stl, "diag");
    for (Index draws : {1, 8, 40}) check_step(model, "fullrank", draws, 2, stl, "dense");
  }
  std::printf("-- 2b. Minibatch steps, plain and with the control variate\n");
  for (const char* model : {"logistic glm", "linreg glm", "neg-binomial glm"})
    for (const char* family : {"meanfield", "fullrank"})
      for (Index draws : {1, 8})
        for (bool cv : {false, true}) {
          check_step(model, family, draws, 2, stl, "diag", 500, cv);
          check_step(model, family, draws, 1, stl, "none", 100, cv);
        }
  std::printf("-- 3. run_fit\n");
  for (const char* family : {"meanfield", "fullrank", "lowrank"}) {
    check_fit("logistic glm", family);
    check_fit("expression", family);
  }
  check_fit("gp cholesky", "meanfield");
  for (const char* family : {"meanfield", "fullrank", "lowrank"}) check_fit("logistic glm", family, 1000);
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
