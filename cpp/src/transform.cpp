#include "fastvi/transform.hpp"

#include <stdexcept>
#include <string>

namespace fastvi {

Transform Transform::from_bounds(double lower, double upper) {
  if (std::isnan(lower) || std::isnan(upper)) throw std::invalid_argument("bounds must not be NaN");
  if (lower == kInf) throw std::invalid_argument("lower bound must be below +inf");
  if (upper == -kInf) throw std::invalid_argument("upper bound must be above -inf");
  if (!(lower < upper))
    throw std::invalid_argument("lower (" + std::to_string(lower) + ") must be less than upper (" +
                                std::to_string(upper) + ")");
  Transform t;
  t.lower = lower;
  t.upper = upper;
  const bool has_lower = std::isfinite(lower), has_upper = std::isfinite(upper);
  t.kind = has_lower && has_upper ? TransformKind::Interval
           : has_lower            ? TransformKind::Lower
           : has_upper            ? TransformKind::Upper
                                  : TransformKind::Identity;
  return t;
}

double Transform::unconstrain(double x) const {
  switch (kind) {
    case TransformKind::Identity:
      return x;
    case TransformKind::Lower:
      return std::log(x - lower);
    case TransformKind::Upper:
      return std::log(upper - x);
    case TransformKind::Interval: {
      const double p = (x - lower) / (upper - lower);
      return std::log(p) - std::log1p(-p);
    }
  }
  return x;
}

}  // namespace fastvi
