// Common numeric types. Draw batches are column-major: one column per draw.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <limits>

namespace fastvi {

using Index = Eigen::Index;
using Matrix = Eigen::MatrixXd;  // column-major
using Vector = Eigen::VectorXd;
using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline constexpr double kInf = std::numeric_limits<double>::infinity();
inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Most elements a parameter block, data array or expression may have (2^40, 8 TiB of doubles):
// far beyond this machine, small enough that sizes and sums of sizes never overflow Index.
inline constexpr Index kMaxElements = Index(1) << 40;

// The SIMD packet of doubles the build targets (Eigen's packet math: AVX-512, AVX or SSE) and its
// width, for the loops written in packets (Adam's update, the GLM row kernel and column maths).
namespace simd {
using Packet = Eigen::internal::packet_traits<double>::type;
inline constexpr Index kWidth = Eigen::internal::packet_traits<double>::size;
}  // namespace simd

}  // namespace fastvi
