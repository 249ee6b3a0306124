// Counter-based standard-normal draws (Philox4x32-10, Salmon et al. 2011).
//
// The value of draw j of coordinate i at step t depends only on (seed, stream, t, i, j), never on
// the order of evaluation, so a fit gives the same numbers with any number of threads.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "fastvi/types.hpp"

namespace fastvi {

struct PhiloxBlock {
  std::uint32_t v[4];
};

inline PhiloxBlock philox4x32(std::uint32_t c0, std::uint32_t c1, std::uint32_t c2, std::uint32_t c3, std::uint32_t k0,
                              std::uint32_t k1) {
  constexpr std::uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr std::uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t(kM0) * c0;
    const std::uint64_t p1 = std::uint64_t(kM1) * c2;
    const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
    const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

// Streams keep the draws of different purposes (optimisation, sampling, ELBO checks) apart.
enum class Stream : std::uint32_t { Optimise = 0, Sample = 1, Evaluate = 2, Minibatch = 3 };

// Fills eps (rows x cols) with independent standard normals for (seed, stream, step):
// entries (2k, j) and (2k+1, j) come from one Philox block with counter (k, j, step, stream).
inline void fill_standard_normal(Eigen::Ref<Matrix> eps, std::uint64_t seed, Stream stream, std::uint64_t step,
                                 Index first_column = 0) {
  const auto k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  const Index rows = eps.rows();
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  constexpr double kTwo53 = 1.0 / 9007199254740992.0;  // 2^-53
  for (Index j = 0; j < eps.cols(); ++j) {
    const auto col = std::uint32_t(j + first_column);
    for (Index k = 0; 2 * k < rows; ++k) {
      const PhiloxBlock b = philox4x32(std::uint32_t(k), col, std::uint32_t(step),
                                       std::uint32_t(step >> 32) ^ (std::uint32_t(stream) << 28), k0, k1);
      const std::uint64_t a = (std::uint64_t(b.v[0]) << 32) | b.v[1];
      const std::uint64_t c = (std::uint64_t(b.v[2]) << 32) | b.v[3];
      const double u1 = double((a >> 11) + 1) * kTwo53;  // (0, 1]: log is finite
      const double u2 = double(c >> 11) * kTwo53;        // [0, 1)
      const double r = std::sqrt(-2.0 * std::log(u1));
      eps(2 * k, j) = r * std::cos(kTwoPi * u2);
      if (2 * k + 1 < rows) eps(2 * k + 1, j) = r * std::sin(kTwoPi * u2);
    }
  }
}

// Uniform integers in [0, n0) and [0, n1) (n0, n1 <= 2^40) for index i of (seed, stream, step),
// from the two 64-bit halves of one Philox block: the high bits of each half times its n (Lemire's
// method without its rejection step: the bias, under n / 2^64 <= 2^-24, is far below anything a
// minibatch could show).
inline std::array<std::uint64_t, 2> uniform_index_pair(std::uint64_t n0, std::uint64_t n1, std::uint64_t seed,
                                                       Stream stream, std::uint64_t step, std::uint64_t i) {
  const PhiloxBlock b = philox4x32(std::uint32_t(i), std::uint32_t(i >> 32), std::uint32_t(step),
                                   std::uint32_t(step >> 32) ^ (std::uint32_t(stream) << 28), std::uint32_t(seed),
                                   std::uint32_t(seed >> 32));
  const std::uint64_t x0 = (std::uint64_t(b.v[0]) << 32) | b.v[1];
  const std::uint64_t x1 = (std::uint64_t(b.v[2]) << 32) | b.v[3];
  return {std::uint64_t((static_cast<unsigned __int128>(x0) * n0) >> 64),
          std::uint64_t((static_cast<unsigned __int128>(x1) * n1) >> 64)};
}

}  // namespace fastvi
