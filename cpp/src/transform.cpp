#include "fastvi/transform.hpp"

#include <algorithm>
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
    default:  // vector transforms: inverse()
      break;
  }
  return x;
}

}  // namespace fastvi

namespace fastvi {

namespace {

// inv_logit(u) and inv_logit(-u) (p and 1 - p, each to full relative precision) from one exp,
// and optionally their logs (one log1p more).
struct Logistic {
  double p, q, log_p, log_q;
};
inline Logistic logistic(double u, bool logs) {
  const double e = std::exp(-std::abs(u));
  const double small = e / (1.0 + e), large = 1.0 / (1.0 + e);
  Logistic out{u >= 0 ? large : small, u >= 0 ? small : large, 0.0, 0.0};
  if (logs) {
    const double l = std::log1p(e);  // log p = min(u, 0) - l, log q = min(-u, 0) - l
    out.log_p = std::min(u, 0.0) - l;
    out.log_q = std::min(-u, 0.0) - l;
  }
  return out;
}

// tanh(y) and sech(y) from one expm1 (accurate for small |y| too, finite for any y), and
// optionally log(1 - tanh(y)^2) = 2 log sech(y) (one log1p more).
struct Hyperbolic {
  double tanh, sech, log_sech2;
};
inline Hyperbolic hyperbolic(double y, bool log) {
  const double a = std::abs(y), m = std::expm1(-2.0 * a), e = 1.0 + m;  // e = exp(-2|y|)
  Hyperbolic out{std::copysign(-m / (2.0 + m), y), 2.0 * std::sqrt(e) / (2.0 + m), 0.0};
  if (log) out.log_sech2 = 2.0 * (math::kLog2 - a - std::log1p(e));
  return out;
}

std::string shape_string(const std::vector<Index>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

}  // namespace

Transform Transform::vector(const std::string& name, const std::vector<Index>& shape) {
  Transform t;
  const bool matrix = name == "cholesky_corr" || name == "cholesky_cov";
  if (name == "simplex")
    t.kind = TransformKind::Simplex;
  else if (name == "ordered")
    t.kind = TransformKind::Ordered;
  else if (name == "positive_ordered")
    t.kind = TransformKind::PositiveOrdered;
  else if (name == "cholesky_corr")
    t.kind = TransformKind::CholeskyCorr;
  else if (name == "cholesky_cov")
    t.kind = TransformKind::CholeskyCov;
  else
    throw std::invalid_argument("unknown transform '" + name +
                                "' (expected 'simplex', 'ordered', 'positive_ordered', 'cholesky_corr' or "
                                "'cholesky_cov')");
  const size_t axes = matrix ? 2 : 1;
  if (shape.size() < axes)
    throw std::invalid_argument("transform '" + name + "' needs a shape " +
                                (matrix ? std::string("(K, K) (or (..., K, K))") : std::string("(K,) (or (..., K))")) +
                                ", got " + shape_string(shape));
  t.k = shape.back();
  if (matrix && shape[shape.size() - 2] != t.k)
    throw std::invalid_argument("transform '" + name + "' needs square matrices, shape (K, K) (or (..., K, K)), got " +
                                shape_string(shape));
  const Index min_k = (t.kind == TransformKind::Simplex || t.kind == TransformKind::CholeskyCorr) ? 2 : 1;
  if (t.k < min_k)
    throw std::invalid_argument("transform '" + name + "' needs K >= " + std::to_string(min_k) + ", got shape " +
                                shape_string(shape));
  t.count = 1;
  for (size_t i = 0; i + axes < shape.size(); ++i) t.count *= shape[i];
  const Index k = t.k;
  switch (t.kind) {
    case TransformKind::Simplex:
      t.free_each = k - 1, t.size_each = k, t.lower = 0.0, t.upper = 1.0;
      t.log_remaining.resize(size_t(k - 1));
      for (Index i = 0; i + 1 < k; ++i) t.log_remaining[size_t(i)] = std::log(double(k - 1 - i));
      break;
    case TransformKind::Ordered:
      t.free_each = k, t.size_each = k;
      break;
    case TransformKind::PositiveOrdered:
      t.free_each = k, t.size_each = k, t.lower = 0.0;
      break;
    case TransformKind::CholeskyCorr:
      t.free_each = k * (k - 1) / 2, t.size_each = k * k, t.lower = -1.0, t.upper = 1.0;
      break;
    case TransformKind::CholeskyCov:
      t.free_each = k * (k + 1) / 2, t.size_each = k * k;
      break;
    default:
      break;
  }
  return t;
}

std::string Transform::name() const {
  switch (kind) {
    case TransformKind::Simplex:
      return "simplex";
    case TransformKind::Ordered:
      return "ordered";
    case TransformKind::PositiveOrdered:
      return "positive_ordered";
    case TransformKind::CholeskyCorr:
      return "cholesky_corr";
    case TransformKind::CholeskyCov:
      return "cholesky_cov";
    default:
      return "";
  }
}

double Transform::forward(const double* z, double* x) const {
  const Index K = k;
  double log_j = 0.0;
  switch (kind) {
    case TransformKind::Simplex: {
      // stick_k carried as a product of (1 - inv_logit) factors, log stick_k as a sum of their logs
      double stick = 1.0, log_stick = 0.0;
      for (Index i = 0; i + 1 < K; ++i) {
        const Logistic l = logistic(z[i] - log_remaining[size_t(i)], true);
        log_j += l.log_p + l.log_q + log_stick;
        x[i] = stick * l.p;
        stick *= l.q;
        log_stick += l.log_q;
      }
      x[K - 1] = stick;
      return log_j;
    }
    case TransformKind::Ordered:
    case TransformKind::PositiveOrdered: {
      const bool positive = kind == TransformKind::PositiveOrdered;
      x[0] = positive ? std::exp(z[0]) : z[0];
      if (positive) log_j += z[0];
      for (Index i = 1; i < K; ++i) {
        x[i] = x[i - 1] + std::exp(z[i]);
        log_j += z[i];
      }
      return log_j;
    }
    case TransformKind::CholeskyCorr: {
      Index pos = 0;
      for (Index i = 0; i < K; ++i) {
        double* row = x + i * K;
        double log_w = 0.0, w = 1.0;  // w_j = sqrt(1 - sum_{j' < j} L(i, j')^2) = prod_{j' < j} sech(z)
        for (Index j = 0; j < i; ++j) {
          const Hyperbolic h = hyperbolic(z[pos++], true);
          row[j] = h.tanh * w;
          log_j += h.log_sech2 + log_w;  // tanh's derivative, and L(i, j)'s factor w_j
          log_w += 0.5 * h.log_sech2;
          w *= h.sech;
        }
        row[i] = w;
        for (Index j = i + 1; j < K; ++j) row[j] = 0.0;
      }
      return log_j;
    }
    case TransformKind::CholeskyCov: {
      Index pos = 0;
      for (Index i = 0; i < K; ++i) {
        double* row = x + i * K;
        for (Index j = 0; j < i; ++j) row[j] = z[pos++];
        row[i] = std::exp(z[pos]);
        log_j += z[pos++];
        for (Index j = i + 1; j < K; ++j) row[j] = 0.0;
      }
      return log_j;
    }
    default:
      throw std::logic_error("Transform::forward called for an element-wise transform");
  }
}

void Transform::backward(const double* z, const double* x, const double* gx, double* gz) const {
  const Index K = k;
  switch (kind) {
    case TransformKind::Simplex: {
      // reverse sweep of x_i = stick_i p_i, stick_{i+1} = stick_i (1 - p_i); `adj` is d/d stick_{i+1}
      double adj = gx[K - 1];
      for (Index i = K - 1; i-- > 0;) {
        const Logistic l = logistic(z[i] - log_remaining[size_t(i)], false);
        const double p = l.p, q = l.q;
        // stick_i p_i (1 - p_i) = x_i q_i; d log|J| / dz_i = 1 - 2 p_i - (K - 2 - i) p_i
        gz[i] = (gx[i] - adj) * x[i] * q + (q - p) - double(K - 2 - i) * p;
        adj = gx[i] * p + adj * q;
      }
      return;
    }
    case TransformKind::Ordered:
    case TransformKind::PositiveOrdered: {
      double tail = 0.0;  // sum_{j >= i} gx_j
      for (Index i = K; i-- > 1;) {
        tail += gx[i];
        gz[i] = tail * std::exp(z[i]) + 1.0;
      }
      tail += gx[0];
      gz[0] = kind == TransformKind::PositiveOrdered ? tail * std::exp(z[0]) + 1.0 : tail;
      return;
    }
    case TransformKind::CholeskyCorr: {
      Index pos = 0;
      for (Index i = 1; i < K; ++i) {
        const double* grow = gx + i * K;
        double* g = gz + pos;
        const double* y = z + pos;
        // forward again, keeping w_j in g[j] (overwritten by the gradient below)
        double w = 1.0;
        for (Index j = 0; j < i; ++j) {
          g[j] = w;
          w *= hyperbolic(y[j], false).sech;
        }
        double adj = grow[i];  // d/d w_{j+1}; L(i, i) = w_i
        for (Index j = i; j-- > 0;) {
          const Hyperbolic h = hyperbolic(y[j], false);
          const double t = h.tanh, c = h.sech;
          const double d_log_j = -2.0 * t * (1.0 + 0.5 * double(i - 1 - j));
          g[j] = g[j] * (grow[j] * c * c - adj * t * c) + d_log_j;
          adj = grow[j] * t + adj * c;
        }
        pos += i;
      }
      return;
    }
    case TransformKind::CholeskyCov: {
      Index pos = 0;
      for (Index i = 0; i < K; ++i) {
        const double* grow = gx + i * K;
        for (Index j = 0; j < i; ++j) gz[pos++] = grow[j];
        gz[pos] = grow[i] * x[i * K + i] + 1.0;
        ++pos;
      }
      return;
    }
    default:
      throw std::logic_error("Transform::backward called for an element-wise transform");
  }
}

void Transform::inverse(const double* x, double* z) const {
  const Index K = k;
  switch (kind) {
    case TransformKind::Simplex: {
      // z_i = logit(x_i / stick_i) + log(K - 1 - i) = log x_i - log stick_{i+1} + log(K - 1 - i), with
      // stick_{i+1} the sum of x_{i+1..K-1} (kept in z_i first: no cancellation, no buffer)
      double tail = x[K - 1];
      for (Index i = K - 1; i-- > 0;) {
        z[i] = tail;
        tail += x[i];
      }
      for (Index i = 0; i + 1 < K; ++i) z[i] = std::log(x[i]) - std::log(z[i]) + std::log(double(K - 1 - i));
      return;
    }
    case TransformKind::Ordered:
    case TransformKind::PositiveOrdered:
      z[0] = kind == TransformKind::PositiveOrdered ? std::log(x[0]) : x[0];
      for (Index i = 1; i < K; ++i) z[i] = std::log(x[i] - x[i - 1]);
      return;
    case TransformKind::CholeskyCorr: {
      Index pos = 0;
      for (Index i = 1; i < K; ++i) {
        const double* row = x + i * K;
        // 1 - sum_{j' < j} L(i, j')^2 = sum_{j' >= j} L(i, j')^2 for a unit row: a sum without cancellation
        double tail = row[i] * row[i];
        for (Index j = i; j-- > 0;) {
          tail += row[j] * row[j];
          z[pos + j] = std::atanh(row[j] / std::sqrt(tail));
        }
        pos += i;
      }
      return;
    }
    case TransformKind::CholeskyCov: {
      Index pos = 0;
      for (Index i = 0; i < K; ++i) {
        for (Index j = 0; j < i; ++j) z[pos++] = x[i * K + j];
        z[pos++] = std::log(x[i * K + i]);
      }
      return;
    }
    default:
      throw std::logic_error("Transform::inverse called for an element-wise transform");
  }
}

}  // namespace fastvi
