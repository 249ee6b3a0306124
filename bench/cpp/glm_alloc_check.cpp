// Checks that the GLM kernels' evaluate() neither allocates nor forks threads it was not asked
// for, and that 1 and 2 threads give bit-identical results, over a grid of shapes (including K
// above the 240-column GEMM tile and S above the 32-draw panel). Exits non-zero on any failure.
//
// How: this executable defines malloc & co. (forwarding to glibc's __libc_* versions), so every
// heap allocation in the process, from Eigen, libstdc++ or libgomp, passes through a counter that
// is switched on around evaluate(). It also wraps libgomp's GOMP_parallel to record each parallel
// region the kernel opens and its thread count: Eigen's own GEMM threading would show up there
// as extra regions.
#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

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

void check(const std::string& kernel, Index n, Index k, Index draws, bool beta_param) {
  Model model;
  bench::build_glm_model(model, kernel, n, k, beta_param);
  model.reserve(draws);
  Matrix zeta(model.dim(), draws), grad1(model.dim(), draws), grad2(model.dim(), draws);
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (Index i = 0; i < zeta.size(); ++i) zeta.data()[i] = normal(rng);
  Vector lp1(draws), lp2(draws);
  ModelWorkspace ws;
  model.log_density(zeta, ws, lp1, grad1, 2);  // warm-up: workspace, OpenMP thread pool, ICVs

  // The kernel alone (its evaluate) and the whole Model::log_density around it, for 1 and 2 threads.
  Kernel& kernel_impl = *model.factors()[0].impl;
  ws.grad_theta.setZero();
  Vector lp_kernel = Vector::Zero(draws);
  Batch batch{ws.theta.data(), ws.grad_theta.data(), lp_kernel.data(), ws.theta.rows(), draws, 2};
  g_allocs = 0;
  g_regions = 0;
  g_max_region_threads = 0;
  g_counting = true;
  kernel_impl.evaluate(batch);
  model.log_density(zeta, ws, lp1, grad1, 1);
  model.log_density(zeta, ws, lp2, grad2, 2);
  g_counting = false;
  const long allocs = g_allocs, regions = g_regions;
  const unsigned max_threads = g_max_region_threads;
  const bool identical = std::memcmp(lp1.data(), lp2.data(), sizeof(double) * size_t(draws)) == 0 &&
                         std::memcmp(grad1.data(), grad2.data(), sizeof(double) * size_t(grad1.size())) == 0;
  const bool finite = lp1.allFinite() && grad1.allFinite();
  // Serial evaluations open no parallel region; a parallel one opens exactly one, of 2 threads.
  // Only the two evaluations asked for 2 threads may do so, both or neither (same decision), and
  // any GEMM that Eigen threaded by itself would add regions.
  const bool ok = allocs == 0 && (regions == 0 || (regions == 2 && max_threads == 2)) && identical && finite;
  if (!ok) ++failures;
  std::printf("%-4s %-20s N=%6ld K=%4ld S=%3ld beta=%-5s  mallocs=%ld %-8s identical=%d%s\n", ok ? "ok" : "FAIL",
              kernel.c_str(), long(n), long(k), long(draws), beta_param ? "param" : "data", allocs,
              regions ? "parallel" : "serial", int(identical), finite ? "" : " NON-FINITE");
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

}  // namespace

int main() {
  if (!self_test()) return 1;
  for (const char* kernel : {"normal_id_glm", "bernoulli_logit_glm", "poisson_log_glm"}) {
    for (Index draws : {1, 3, 8, 32, 40}) {
      check(kernel, 10000, 50, draws, true);
      check(kernel, 3000, 5, draws, true);
      check(kernel, 20000, 20, draws, false);
    }
    check(kernel, 1000, 300, 8, true);
    check(kernel, 800, 1000, 33, true);
    check(kernel, 7, 3, 2, true);
  }
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
