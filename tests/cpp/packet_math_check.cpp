// The packet math and the GLM row kernel at one x86-64 level: tests/cpp/CMakeLists.txt compiles
// this file once per level (SSE2, AVX2 + FMA, AVX-512), so that the paths a portable or an AVX2
// build takes are tested on whatever machine runs the tests (the Python tests exercise only the
// level the library was built for). tests/test_alloc_check.py runs the levels the CPU supports.
//
//   exp_packets          against std::exp for x in [-800, 720]: within 4 ulp where the result is
//                        normal, within 2 units of the smallest subnormal below that (gradual
//                        underflow), exactly 0 and inf beyond (the measured worst is 1.9 ulp);
//   log1p_and_inverse    against std::log1p and 1 / (1 + t) for t in [0, 1], tiny t included;
//   power_of_two         exact for every m in [-1022, 1023];
//   dot_rows, axpy_rows  on double and float rows, at the row stride K and at the padded stride
//                        of a widened pass (widen_rows), against sums in long double.
// Prints one line per failure and a summary; exits non-zero on any failure.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "glm_rows.hpp"
#include "packet_math.hpp"

namespace {

using namespace fastvi;
using namespace fastvi::kernels;
using simd::kWidth;
using simd::Packet;

int failures = 0;

void fail(const char* what, double x, double got, double want) {
  if (++failures <= 20) std::printf("FAIL %s at %.17g: got %.17g, want %.17g\n", what, x, got, want);
}

void check_exp() {
  std::vector<double> xs;
  for (double x = -800.0; x < 720.0; x += 0.0137) xs.push_back(x);
  for (double x : {-1e6, -746.0, -745.2, -745.1332, -745.13, -744.44, -709.1, -708.3964, -708.4, -1e-300, -0.0, 0.0,
                   1e-300, 0.5 * std::log(2.0), 709.78, 709.7827, 709.79, 710.0, 1e6})
    xs.push_back(x);
  while (xs.size() % kWidth) xs.push_back(0.0);
  const double tiny = std::numeric_limits<double>::denorm_min(), eps = std::numeric_limits<double>::epsilon();
  for (size_t i = 0; i < xs.size(); i += kWidth) {
    Packet x[1] = {Eigen::internal::ploadu<Packet>(xs.data() + i)}, t[1];
    packet_math::exp_packets<1>(x, t);
    alignas(64) double out[kWidth];
    Eigen::internal::pstore(out, t[0]);
    for (Index j = 0; j < kWidth; ++j) {
      const double want = std::exp(xs[i + j]), got = out[j];
      bool ok;
      if (want == 0.0 || std::isinf(want))
        ok = got == want;
      else if (want < std::numeric_limits<double>::min())
        ok = std::fabs(got - want) <= 2.0 * tiny;
      else
        ok = std::fabs(got - want) <= 4.0 * eps * want;
      if (!ok) fail("exp", xs[i + j], got, want);
    }
  }
}

void check_log1p() {
  std::vector<double> ts;
  for (int e = -320; e <= 0; ++e) ts.push_back(std::ldexp(1.0, e) * 0.7);
  for (double t = 0.0; t <= 1.0; t += 1.0 / 4096.0) ts.push_back(t);
  ts.push_back(std::sqrt(2.0) - 1.0);
  ts.push_back(std::nextafter(std::sqrt(2.0) - 1.0, 0.0));
  ts.push_back(1.0);
  while (ts.size() % kWidth) ts.push_back(0.0);
  const double eps = std::numeric_limits<double>::epsilon();
  for (size_t i = 0; i < ts.size(); i += kWidth) {
    Packet t[1] = {Eigen::internal::ploadu<Packet>(ts.data() + i)}, l[1], q[1];
    packet_math::log1p_and_inverse<1>(t, l, q);
    alignas(64) double lo[kWidth], qo[kWidth];
    Eigen::internal::pstore(lo, l[0]);
    Eigen::internal::pstore(qo, q[0]);
    for (Index j = 0; j < kWidth; ++j) {
      const double want_l = std::log1p(ts[i + j]), want_q = 1.0 / (1.0 + ts[i + j]);
      if (std::fabs(lo[j] - want_l) > 4.0 * eps * want_l) fail("log1p", ts[i + j], lo[j], want_l);
      if (std::fabs(qo[j] - want_q) > 4.0 * eps * want_q) fail("1 / (1 + t)", ts[i + j], qo[j], want_q);
    }
  }
}

void check_power_of_two() {
  alignas(64) double m[kWidth], out[kWidth];
  for (int base = -1022; base <= 1023; base += int(kWidth)) {
    for (Index j = 0; j < kWidth; ++j) m[j] = std::min(base + int(j), 1023);
    Eigen::internal::pstore(out, packet_math::power_of_two(Eigen::internal::pload<Packet>(m)));
    for (Index j = 0; j < kWidth; ++j)
      if (out[j] != std::ldexp(1.0, int(m[j]))) fail("power_of_two", m[j], out[j], std::ldexp(1.0, int(m[j])));
  }
}

// The row kernel on n rows of k columns of X (type T), one pass, against long double sums.
template <class T>
void check_rows(Index k, Index n, bool widen) {
  std::mt19937_64 rng(k * 131 + n);
  std::normal_distribution<double> normal(0.0, 1.0);
  const Index kp = glm_rows::packets(k), ld = kp * kWidth;
  std::vector<T> x(size_t(n * k + kWidth), T(0));  // zero padding after the last row
  for (Index i = 0; i < n * k; ++i) x[size_t(i)] = T(normal(rng));
  std::vector<double> beta(static_cast<size_t>(ld), 0.0), r(static_cast<size_t>(n)), eta(static_cast<size_t>(n)),
      g(static_cast<size_t>(ld), 0.0);
  for (Index j = 0; j < k; ++j) beta[size_t(j)] = normal(rng);
  for (Index i = 0; i < n; ++i) r[size_t(i)] = normal(rng);
  if (widen) {
    if constexpr (std::is_same_v<T, float>) {
      std::vector<double> wide(static_cast<size_t>(n * ld));
      glm_rows::widen_rows(x.data(), k, n, wide.data(), nullptr, 0);
      glm_rows::dot_rows(static_cast<const double*>(wide.data()), k, ld, n, beta.data(), eta.data());
      glm_rows::axpy_rows(static_cast<const double*>(wide.data()), k, ld, n, r.data(), g.data());
    }
  } else {
    glm_rows::dot_rows(x.data(), k, k, n, beta.data(), eta.data());
    glm_rows::axpy_rows(x.data(), k, k, n, r.data(), g.data());
  }
  // got = sum_m term(m) over m in [0, count), within 64 eps of the sum of |term| (a bound on the
  // rounding of any order of summation), the sum taken in long double.
  auto check_sum = [](const char* what, Index index, double got, Index count, auto term) {
    long double want = 0, scale = 0;
    for (Index m = 0; m < count; ++m) {
      const long double t = term(m);
      want += t;
      scale += std::fabs(t);
    }
    if (std::fabs(got - double(want)) > 64.0 * std::numeric_limits<double>::epsilon() * double(scale))
      fail(what, double(index), got, double(want));
  };
  auto xv = [&](Index i, Index j) { return (long double)x[size_t(i * k + j)]; };
  for (Index i = 0; i < n; ++i)
    check_sum("dot_rows", i, eta[size_t(i)], k, [&](Index j) { return xv(i, j) * beta[size_t(j)]; });
  for (Index j = 0; j < k; ++j)
    check_sum("axpy_rows", j, g[size_t(j)], n, [&](Index i) { return xv(i, j) * r[size_t(i)]; });
}

}  // namespace

int main() {
  check_exp();
  check_log1p();
  check_power_of_two();
  for (Index k : {1, 3, 8, 13, 50, 64, 65, 130})
    for (Index n : {1, 7, 13, 32, 64}) {
      check_rows<double>(k, n, false);
      check_rows<float>(k, n, false);
      check_rows<float>(k, n, true);
    }
  std::printf("packet width %d doubles: %s: %d failure(s)\n", int(kWidth), failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
