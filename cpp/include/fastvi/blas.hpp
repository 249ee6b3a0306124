// An external BLAS for the GEMM-shaped products over many draws (issue 14).
//
// Eigen's GEMM reaches about 70 % of a tuned BLAS's rate on AVX2 CPUs for the fused GLM kernels'
// block shapes (X_blk B and X_blkᵀ R, e.g. 160 x 50 times 50 x 32). The BLAS users already have
// is usually tuned: scipy ships OpenBLAS and exports its dgemm as a C function pointer
// (scipy.linalg.cython_blas), which fastvi's Python layer hands to the engine here. The core does
// not link a BLAS itself, so a C++-only build still has no dependency beyond Eigen.
//
// Which BLAS a kernel uses is fixed when the kernel is built (Kernel constructors read
// current_dgemm() once), so one model's results never change during a fit, and changing the
// setting only affects kernels built afterwards.
//
// Thread-count independence: every call multiplies one fixed block (rows cut by N, K and S alone),
// from whichever thread runs it. A BLAS partitions a product among its own threads by blocks of the
// result, never along the summed dimension, so a call's result does not depend on how many threads
// the BLAS uses either. Calls are kept small enough (kSerialWork) that OpenBLAS runs them on the
// calling thread: larger ones would wake its thread pool, which serialises concurrent calls.
#pragma once

namespace fastvi::blas {

// Fortran dgemm with LP64 integers, as scipy.linalg.cython_blas exports it (and as OpenBLAS's
// dgemm_ reads it: no hidden string-length arguments are needed for one-character options).
using Dgemm = void (*)(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
                       const double* beta, double* c, const int* ldc);

// m * n * k up to which OpenBLAS computes a GEMM on the calling thread (its interface/gemm.c:
// SMP_THRESHOLD_MIN 65536 x GEMM_MULTITHREAD_THRESHOLD 4, the default of its builds).
constexpr long kSerialWork = 262144;

// The dgemm newly built kernels use for their GEMM-shaped blocks; nullptr (the default) for Eigen's
// products. Thread-safe.
void set_dgemm(Dgemm fn) noexcept;
Dgemm current_dgemm() noexcept;

// c += a b through dgemm, with a (m x k), b (k x n) and c (m x n) column-major at leading
// dimensions lda, ldb and ldc: the "N", "N" product with beta = 1, computed without that call.
//
// Why: OpenBLAS's small-matrix kernel for "N", "N" on AVX-512 CPUs (0.3.30, dgemm_small_kernel_nn
// for SkylakeX, which scipy's build runs on Zen 4 as well) calls malloc on every call whose m is
// not a multiple of 8, and the hot loop must not allocate. Its "T", "T" kernel does not (nor do
// "T", "N" and "N", "T"; measured over m <= 70, n <= 40, k <= 500), so this forms cᵀ's slices
// bᵀ aᵀ with "T", "T" into a stack buffer and adds them to c transposed: kSliceRows x
// kSliceDraws doubles (16 KiB) at a time, an extra m x n additions against the product's
// m x n x k multiply-adds.
void add_product(Dgemm dgemm, int m, int n, int k, const double* a, int lda, const double* b, int ldb, double* c,
                 int ldc) noexcept;

}  // namespace fastvi::blas
