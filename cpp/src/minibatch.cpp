#include "fastvi/minibatch.hpp"

#include <algorithm>
#include <array>
#include <numeric>
#include <stdexcept>

namespace fastvi {
namespace {

constexpr int kDigitBits = 11;  // radix-sort digits: 2,048 counters, 2 passes up to N = 2^22
constexpr Index kDigits = Index(1) << kDigitBits;

}  // namespace

MinibatchSampler::MinibatchSampler(Index rows, Index batch) : rows_(rows) {
  if (batch < 1 || batch >= rows) throw std::invalid_argument("a minibatch needs 1 <= batch < rows");
  with_replacement_ = batch <= rows / 8;
  batch_.resize(size_t(batch));
  if (!with_replacement_) {
    swaps_.resize(size_t(batch));
    permutation_.resize(size_t(rows));
    std::iota(permutation_.begin(), permutation_.end(), Index(0));
  }
}

const Index* MinibatchSampler::draw(std::uint64_t seed, Stream stream, std::uint64_t step) {
  const auto n = std::uint64_t(rows_);
  const size_t b = batch_.size();
  // The estimate's stream in the counter's top bits (counters stay below 2^48): a stream's
  // minibatches are its own.
  const std::uint64_t stream_bits = std::uint64_t(stream) << 48;
  if (with_replacement_) {
    for (size_t i = 0; i < b; i += 2) {
      const auto pair = uniform_index_pair(n, n, seed, Stream::Minibatch, step, stream_bits | (i / 2));
      batch_[i] = Index(pair[0]);
      if (i + 1 < b) batch_[i + 1] = Index(pair[1]);
    }
    return batch_.data();
  }
  for (size_t i = 0; i < b; i += 2) {
    const auto pair = uniform_index_pair(n - i, n - i - 1, seed, Stream::Minibatch, step, stream_bits | (i / 2));
    for (size_t j = i; j < std::min(i + 2, b); ++j) {
      swaps_[j] = Index(j + pair[j - i]);
      std::swap(permutation_[j], permutation_[size_t(swaps_[j])]);
    }
  }
  std::copy(permutation_.begin(), permutation_.begin() + std::ptrdiff_t(b), batch_.begin());
  // Undo the swaps in reverse order: the permutation is the identity again, for the next draw.
  for (size_t i = b; i-- > 0;) std::swap(permutation_[i], permutation_[size_t(swaps_[i])]);
  sort_batch();
  return batch_.data();
}

// Least significant digit first, as many passes of at most kDigitBits as the largest row needs:
// O(batch) per pass, without std::sort's branch mispredictions.
void MinibatchSampler::sort_batch() {
  int bits = 0;
  while (bits < 63 && ((rows_ - 1) >> bits) > 0) ++bits;
  const int passes = (bits + kDigitBits - 1) / kDigitBits;
  if (passes == 0) return;
  const int digit = (bits + passes - 1) / passes;
  const Index mask = (Index(1) << digit) - 1;
  const Index count = Index(batch_.size());
  std::array<Index, kDigits> counts;
  Index* from = batch_.data();
  Index* to = swaps_.data();  // free once the shuffle is undone
  for (int p = 0; p < passes; ++p) {
    const int shift = p * digit;
    std::fill(counts.begin(), counts.begin() + (mask + 1), Index(0));
    for (Index i = 0; i < count; ++i) ++counts[size_t((from[i] >> shift) & mask)];
    Index total = 0;
    for (Index d = 0; d <= mask; ++d) {
      const Index here = counts[size_t(d)];
      counts[size_t(d)] = total;
      total += here;
    }
    for (Index i = 0; i < count; ++i) to[counts[size_t((from[i] >> shift) & mask)]++] = from[i];
    std::swap(from, to);
  }
  if (passes % 2 == 1) std::copy(from, from + count, batch_.data());
}

}  // namespace fastvi
