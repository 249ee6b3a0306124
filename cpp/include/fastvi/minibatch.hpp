// Minibatches of rows for stochastic VI (ElboEstimator with batch_rows > 0): B rows out of N for
// each (seed, stream, step), each row uniformly distributed, so that N / B times their terms is an
// unbiased estimate of the full sum.
#pragma once

#include <cstdint>
#include <vector>

#include "fastvi/rng.hpp"
#include "fastvi/types.hpp"

namespace fastvi {

class MinibatchSampler {
 public:
  // Sizes every buffer once (nothing is allocated per draw). 1 <= batch < rows.
  MinibatchSampler(Index rows, Index batch);

  // The rows of the draw for (seed, stream, step): batch() row numbers (see below).
  const Index* draw(std::uint64_t seed, Stream stream, std::uint64_t step);

  Index rows() const { return rows_; }
  Index batch() const { return Index(batch_.size()); }

 private:
  Index rows_;
  // Few rows of many (batch <= rows / 8): independent uniform rows (with replacement), in the
  // order drawn: two rows per Philox block, no N-sized array and no sort, so a draw costs a few
  // nanoseconds per row whatever N (sorting and removing repeats cost 10x the rows' own terms).
  // Repeats only add to the variance the fraction batch / rows, at most 1/8. Otherwise: distinct
  // rows in increasing order, from a partial Fisher-Yates shuffle of 0..N-1 undone after each draw.
  bool with_replacement_;
  std::vector<Index> batch_, permutation_, swaps_;
  void sort_batch();  // LSD radix sort of batch_ (swaps_ as its buffer)
};

}  // namespace fastvi
