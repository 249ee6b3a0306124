#include "fastvi/blas.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>

namespace fastvi::blas {
namespace {
std::atomic<Dgemm> g_dgemm{nullptr};
}  // namespace

void set_dgemm(Dgemm fn) noexcept { g_dgemm.store(fn, std::memory_order_release); }

Dgemm current_dgemm() noexcept { return g_dgemm.load(std::memory_order_acquire); }

void add_product(Dgemm dgemm, int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c,
                 int ldc) noexcept {
  constexpr int kSliceRows = 64, kSliceDraws = 32;  // of c
  double buffer[kSliceRows * kSliceDraws];          // a slice of cᵀ: (columns of c) x (rows of c)
  const double one = 1.0, zero = 0.0;
  for (int j0 = 0; j0 < n; j0 += kSliceDraws) {
    const int nj = std::min(kSliceDraws, n - j0);
    for (int i0 = 0; i0 < m; i0 += kSliceRows) {
      const int mi = std::min(kSliceRows, m - i0);
      // buffer (nj x mi, leading dimension nj) = b[:, j0:j0+nj]ᵀ a[i0:i0+mi, :]ᵀ
      dgemm("T", "T", &nj, &mi, &k, &one, b + std::ptrdiff_t(j0) * ldb, &ldb, a + i0, &lda, &zero, buffer, &nj);
      for (int j = 0; j < nj; ++j) {
        double* col = c + std::ptrdiff_t(j0 + j) * ldc + i0;
        for (int i = 0; i < mi; ++i) col[i] += buffer[j + i * nj];
      }
    }
  }
}

}  // namespace fastvi::blas
