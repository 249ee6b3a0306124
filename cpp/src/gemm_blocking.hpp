// Blocking of the GEMM-shaped products over a batch of draws: the fused GLM kernels
// (kernels/glm.cpp: X_blk B and X_blkᵀ R per block of rows) and the X @ v expression node
// (expression.cpp). One set of limits for both, so that they stay allocation-free alike.
// (blas_block_rows: the blocks when the GLM kernels call an external BLAS instead.)
//
// Eigen packs kc x mc and kc x nc blocks of a product's operands, on the stack while each is below
// EIGEN_STACK_ALLOCATION_LIMIT (128 KB = 16384 doubles), on the heap above (at N = 10,000, S >= 8
// one unblocked product made 2-3 heap allocations per log density). Every product here is at most
// (block rows) x (tile) times (tile) x (panel), or its transpose, and both packed blocks together
// stay below kGemmBudget doubles.
#pragma once

#include <algorithm>

#include "fastvi/blas.hpp"
#include "fastvi/types.hpp"

namespace fastvi::gemm_blocking {

constexpr Index kMaxPanel = 32;       // draws per product
constexpr Index kMaxTileK = 240;      // columns of X per product
constexpr Index kMaxBlockRows = 256;  // rows of X per product
constexpr Index kGemmBudget = 12288;  // doubles in both packed blocks of a product

// Rows of X per block for products with `tile` columns of X (1 <= tile <= kMaxTileK) and `panel`
// draws (1 <= panel <= kMaxPanel): the largest multiple of 8 rows, at least 8 and at most
// kMaxBlockRows, for which tile x (rows + panel), the forward product's packed blocks, and
// rows x (tile + panel), the backward one's, fit the budget. A multiple of 8 keeps every scratch
// column of a block 64-byte aligned.
inline Index block_rows(Index tile, Index panel) {
  const Index rows = std::min({kMaxBlockRows, kGemmBudget / tile - panel, kGemmBudget / (tile + panel)});
  return std::max<Index>(8, rows / 8 * 8);
}

// Rows of X per block when an external BLAS computes the products (blas.hpp): it packs into
// buffers of its own, so only the call's size limits the block: the largest multiple of 8 rows,
// at least 8 and at most kMaxBlockRows, with rows x tile x panel within blas::kSerialWork, so
// that OpenBLAS runs each call on the calling thread. (At K = 50, S = 32: 160 rows.)
inline Index blas_block_rows(Index tile, Index panel) {
  const Index rows = std::min<Index>(kMaxBlockRows, Index(blas::kSerialWork) / (tile * panel));
  return std::max<Index>(8, rows / 8 * 8);
}

}  // namespace fastvi::gemm_blocking
