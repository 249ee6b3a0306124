#include "fastvi/expression.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fastvi/blas.hpp"
#include "fastvi/math.hpp"
#include "gemm_blocking.hpp"

namespace fastvi {
namespace {

// A read/write view of the value and gradient matrices in the form operands understand.
Batch view(const Matrix& value, Matrix* grad) {
  return Batch{value.data(), grad ? grad->data() : nullptr, nullptr, value.rows(), value.cols(), 1};
}

using StridedMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
using ConstStridedMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
using ArrayMap = Eigen::Map<Eigen::ArrayXd>;  // one draw's run of a node's or operand's rows
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXd>;

// d/dx log Gamma(x) for any x that is not 0 or a negative integer (reflection below 0).
double digamma_any(double x) {
  if (x > 0) return math::digamma(x);
  if (x == std::floor(x)) return kNaN;
  return math::digamma(1.0 - x) - math::kPi / std::tan(math::kPi * x);
}

// log(exp(x) + exp(y)) without overflow; -inf when both are.
double log_add_exp(double x, double y) {
  const double m = std::max(x, y);
  if (m == -kInf) return -kInf;
  if (m == kInf) return kInf;
  return m + std::log1p(std::exp(-std::abs(x - y)));
}

double binary_value(BinaryOp op, double x, double y) {
  switch (op) {
    case BinaryOp::Add:
      return x + y;
    case BinaryOp::Sub:
      return x - y;
    case BinaryOp::Mul:
      return x * y;
    case BinaryOp::Div:
      return x / y;
    case BinaryOp::Pow:
      return std::pow(x, y);
    case BinaryOp::LogAddExp:
      return log_add_exp(x, y);
  }
  return kNaN;
}

// The partials of out = x (op) y with respect to x and y (dy only when need_dy: for a power, it
// costs a log that a data exponent does not need).
struct Partials {
  double dx, dy;
};
Partials binary_partials(BinaryOp op, double x, double y, double out, bool need_dy) {
  switch (op) {
    case BinaryOp::Add:
      return {1.0, 1.0};
    case BinaryOp::Sub:
      return {1.0, -1.0};
    case BinaryOp::Mul:
      return {y, x};
    case BinaryOp::Div:
      return {1.0 / y, -out / y};  // d(x/y)/dy = -(x/y)/y
    case BinaryOp::Pow:
      // d/dx = y x^(y-1) (0 for y == 0, also at x == 0); d/dy = x^y log x (0 where x^y is 0)
      return {y == 0 ? 0.0 : y * std::pow(x, y - 1.0), (!need_dy || out == 0) ? 0.0 : out * std::log(x)};
    case BinaryOp::LogAddExp:
      if (out == -kInf) return {0.0, 0.0};
      return {std::exp(x - out), std::exp(y - out)};
  }
  return {kNaN, kNaN};
}

double unary_value(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Neg:
      return -x;
    case UnaryOp::Exp:
      return std::exp(x);
    case UnaryOp::Log:
      return std::log(x);
    case UnaryOp::Log1pExp:
      return math::log1p_exp(x);
    case UnaryOp::InvLogit:
      return math::inv_logit(x);
    case UnaryOp::Sqrt:
      return std::sqrt(x);
    case UnaryOp::Square:
      return x * x;
    case UnaryOp::Abs:
      return std::abs(x);
    case UnaryOp::Log1m:
      return std::log1p(-x);
    case UnaryOp::LGamma:
      return math::log_gamma(x);
    case UnaryOp::Log1p:
      return std::log1p(x);
    case UnaryOp::Expm1:
      return std::expm1(x);
    case UnaryOp::Tanh:
      return std::tanh(x);
    case UnaryOp::Logit:
      return std::log(x) - std::log1p(-x);
    case UnaryOp::LogInvLogit:
      return -math::log1p_exp(-x);
  }
  return kNaN;
}

// dy/dx at x, given y = f(x) (used where that is cheaper).
double unary_derivative(UnaryOp op, double x, double y) {
  switch (op) {
    case UnaryOp::Neg:
      return -1.0;
    case UnaryOp::Exp:
      return y;
    case UnaryOp::Log:
      return 1.0 / x;
    case UnaryOp::Log1pExp:
      return math::inv_logit(x);
    case UnaryOp::InvLogit:
      return y * (1.0 - y);
    case UnaryOp::Sqrt:
      return 0.5 / y;
    case UnaryOp::Square:
      return 2.0 * x;
    case UnaryOp::Abs:
      return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0);
    case UnaryOp::Log1m:
      return -1.0 / (1.0 - x);
    case UnaryOp::LGamma:
      return digamma_any(x);
    case UnaryOp::Log1p:
      return 1.0 / (1.0 + x);
    case UnaryOp::Expm1:
      return y + 1.0;
    case UnaryOp::Tanh:
      return 1.0 - y * y;
    case UnaryOp::Logit:
      return 1.0 / (x * (1.0 - x));
    case UnaryOp::LogInvLogit:
      return math::inv_logit(-x);
  }
  return kNaN;
}

// Ops whose whole-draw path is written with Eigen's vectorised array functions; the others run
// element by element through unary_value / binary_value on either path.
bool vectorised(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg:
    case UnaryOp::Exp:
    case UnaryOp::Log:
    case UnaryOp::Log1pExp:
    case UnaryOp::InvLogit:
    case UnaryOp::Sqrt:
    case UnaryOp::Square:
    case UnaryOp::Abs:
      return true;
    default:
      return false;
  }
}
bool vectorised(BinaryOp op) { return op != BinaryOp::Pow; }

class Binary final : public Node {
 public:
  Binary(BinaryOp op, Operand a, Operand b, Index n) : op_(op), a_(std::move(a)), b_(std::move(b)) {
    size = n;
    whole_draw_ = n >= kMinWholeDraw && a_.whole_draw() && b_.whole_draw() && vectorised(op_);
  }

  void forward(Matrix& value) const override {
    const Batch v = view(value, nullptr);
    if (whole_draw_) return forward_whole_draws(v, value);
    for (Index s = 0; s < v.draws; ++s)
      for (Index n = 0; n < size; ++n) value(row + n, s) = binary_value(op_, a_.value(v, n, s), b_.value(v, n, s));
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    const Batch v = view(value, &grad);
    if (whole_draw_) return backward_whole_draws(v, value, grad);
    const bool da = a_.is_param, db = b_.is_param;
    for (Index s = 0; s < v.draws; ++s)
      for (Index n = 0; n < size; ++n) {
        const double g = grad(row + n, s);
        const Partials d = binary_partials(op_, a_.value(v, n, s), b_.value(v, n, s), value(row + n, s), db);
        if (da) a_.add_grad(v, n, s, g * d.dx);
        if (db) b_.add_grad(v, n, s, g * d.dy);
      }
  }

 private:
  // The same, a draw at a time with Eigen arrays, when both operands are contiguous or scalar.
  // Kept out of line (here and in Unary): inlined, the vectorised code slowed the element loops
  // around it (eight schools, whose nodes have 8 elements, ran 2 % slower per step).
  [[gnu::noinline]] void forward_whole_draws(const Batch& v, Matrix& value) const {
    for (Index s = 0; s < v.draws; ++s) {
      ArrayMap out(value.col(s).data() + row, size);
      with_draw(a_, v, s, size, [&](const auto& x) {
        with_draw(b_, v, s, size, [&](const auto& y) {
          switch (op_) {
            case BinaryOp::Add:
              out = x + y;
              break;
            case BinaryOp::Sub:
              out = x - y;
              break;
            case BinaryOp::Mul:
              out = x * y;
              break;
            case BinaryOp::Div:
              out = x / y;
              break;
            case BinaryOp::LogAddExp:  // max + log1p(exp(-|x - y|)), with out holding exp(-|x - y|) first;
              // where the max is infinite (x - y can be NaN there) the result is the max
              out = (-(x - y).abs()).exp();
              out = (x.max(y).abs() == kInf).select(x.max(y), x.max(y) + math::log1p_nonneg(out));
              break;
            default:  // not vectorised: never on this path
              break;
          }
        });
      });
    }
  }

  [[gnu::noinline]] void backward_whole_draws(const Batch& v, const Matrix& value, Matrix& grad) const {
    const bool da = a_.is_param, db = b_.is_param;
    for (Index s = 0; s < v.draws; ++s) {
      const ConstArrayMap g(grad.col(s).data() + row, size), out(value.col(s).data() + row, size);
      with_draw(a_, v, s, size, [&](const auto& x) {
        with_draw(b_, v, s, size, [&](const auto& y) {
          switch (op_) {
            case BinaryOp::Add:
              if (da) add_grad_draw(a_, v, s, g);
              if (db) add_grad_draw(b_, v, s, g);
              break;
            case BinaryOp::Sub:
              if (da) add_grad_draw(a_, v, s, g);
              if (db) add_grad_draw(b_, v, s, -g);
              break;
            case BinaryOp::Mul:
              if (da) add_grad_draw(a_, v, s, g * y);
              if (db) add_grad_draw(b_, v, s, g * x);
              break;
            case BinaryOp::Div:
              if (da) add_grad_draw(a_, v, s, g / y);
              if (db) add_grad_draw(b_, v, s, -g * out / y);  // d(x/y)/dy = -(x/y)/y
              break;
            case BinaryOp::LogAddExp:  // d/dx = exp(x - out), 0 where out is -inf
              if (da) add_grad_draw(a_, v, s, (out == -kInf).select(0.0, g * (x - out).exp()));
              if (db) add_grad_draw(b_, v, s, (out == -kInf).select(0.0, g * (y - out).exp()));
              break;
            default:  // not vectorised: never on this path
              break;
          }
        });
      });
    }
  }

  BinaryOp op_;
  Operand a_, b_;
  bool whole_draw_ = false;  // both operands contiguous or scalar (and enough elements): vectorised
};

// The input is a whole block of rows (a parameter or node), so draw s is one contiguous run.
class Unary final : public Node {
 public:
  Unary(UnaryOp op, Operand a) : op_(op), a_(std::move(a)) {
    size = a_.size();
    whole_draw_ = size >= kMinWholeDraw && vectorised(op_);
  }

  void forward(Matrix& value) const override {
    if (whole_draw_) return forward_whole_draws(value);
    for (Index s = 0; s < value.cols(); ++s)
      for (Index n = 0; n < size; ++n) value(row + n, s) = unary_value(op_, value(a_.row + n, s));
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    if (whole_draw_) return backward_whole_draws(value, grad);
    for (Index s = 0; s < value.cols(); ++s)
      for (Index n = 0; n < size; ++n) {
        const double x = value(a_.row + n, s), y = value(row + n, s), g = grad(row + n, s);
        grad(a_.row + n, s) += g * unary_derivative(op_, x, y);
      }
  }

 private:
  // The same, a draw at a time with Eigen arrays (the ops for which vectorised() is true).
  [[gnu::noinline]] void forward_whole_draws(Matrix& value) const {
    for (Index s = 0; s < value.cols(); ++s) {
      const ConstArrayMap x(value.col(s).data() + a_.row, size);
      ArrayMap y(value.col(s).data() + row, size);
      switch (op_) {
        case UnaryOp::Neg:
          y = -x;
          break;
        case UnaryOp::Exp:
          y = x.exp();
          break;
        case UnaryOp::Log:
          y = x.log();
          break;
        case UnaryOp::Log1pExp:  // max(x, 0) + log1p(exp(-|x|)), with y holding exp(-|x|) first
          y = (-x.abs()).exp();
          y = x.max(0.0) + math::log1p_nonneg(y);
          break;
        case UnaryOp::InvLogit:
          y = math::inv_logit(x);
          break;
        case UnaryOp::Sqrt:
          y = x.sqrt();
          break;
        case UnaryOp::Square:
          y = x.square();
          break;
        case UnaryOp::Abs:
          y = x.abs();
          break;
        default:  // not vectorised: never on this path
          break;
      }
    }
  }

  [[gnu::noinline]] void backward_whole_draws(const Matrix& value, Matrix& grad) const {
    for (Index s = 0; s < value.cols(); ++s) {
      const ConstArrayMap x(value.col(s).data() + a_.row, size), y(value.col(s).data() + row, size);
      const ConstArrayMap g(grad.col(s).data() + row, size);
      ArrayMap gx(grad.col(s).data() + a_.row, size);
      switch (op_) {  // g * dy/dx, from y where that is cheaper
        case UnaryOp::Neg:
          gx -= g;
          break;
        case UnaryOp::Exp:
          gx += g * y;
          break;
        case UnaryOp::Log:
          gx += g / x;
          break;
        case UnaryOp::Log1pExp:
          gx += g * math::inv_logit(x);
          break;
        case UnaryOp::InvLogit:
          gx += g * (y * (1.0 - y));
          break;
        case UnaryOp::Sqrt:
          gx += 0.5 * g / y;
          break;
        case UnaryOp::Square:
          gx += 2.0 * g * x;
          break;
        case UnaryOp::Abs:  // sign(x), 0 at 0
          gx += g * ((x > 0.0).cast<double>() - (x < 0.0).cast<double>());
          break;
        default:  // not vectorised: never on this path
          break;
      }
    }
  }

  UnaryOp op_;
  Operand a_;
  bool whole_draw_ = false;  // enough elements for the vectorised path, and a vectorised op
};

// X v for every draw, cut into blocks so that it never allocates.
//
// Why blocked: one GEMM over the whole N x S block makes Eigen pack its operands in blocks sized
// from the whole problem, on the heap once they exceed EIGEN_STACK_ALLOCATION_LIMIT; blocked as
// the fused GLM kernels are (gemm_blocking.hpp), Eigen keeps them on the stack. The node runs
// serially; the blocking depends on K and S only, never on threads. Like the GLM kernels, it uses
// the external BLAS set when it was built (fastvi/blas.hpp) for S >= kMinBlasDraws draws.
class MatVec final : public Node {
 public:
  MatVec(RowMatrix x, Operand v) : x_(std::move(x)), v_(std::move(v)) { size = x_.rows(); }

  void forward(Matrix& value) const override {
    const Index ld = value.rows(), draws = value.cols(), k = x_.cols();
    StridedMap out(value.data() + row, size, draws, Eigen::OuterStride<>(ld));
    ConstStridedMap in(value.data() + v_.row, k, draws, Eigen::OuterStride<>(ld));
    if (k == 0) out.setZero();  // no column tiles below
    // Through the BLAS: out_blk (n x p) [+]= X_blk in_blk, with row-major X_blk as X_blkᵀ column-major.
    if (use_blas(draws))
      return for_each_block(draws, [&](Index r0, Index n, Index k0, Index kt, Index s0, Index p) {
        gemm("T", n, p, kt, x_.data() + r0 * k + k0, k, in.data() + k0 + s0 * ld, ld, k0 > 0, &out(r0, s0), ld);
      });
    for_each_block(draws, [&](Index r0, Index n, Index k0, Index kt, Index s0, Index p) {
      auto out_blk = out.block(r0, s0, n, p);
      if (k0 == 0)
        out_blk.noalias() = x_.block(r0, k0, n, kt) * in.block(k0, s0, kt, p);
      else
        out_blk.noalias() += x_.block(r0, k0, n, kt) * in.block(k0, s0, kt, p);
    });
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    const Index ld = value.rows(), draws = value.cols(), k = x_.cols();
    ConstStridedMap g_out(grad.data() + row, size, draws, Eigen::OuterStride<>(ld));
    StridedMap g_in(grad.data() + v_.row, k, draws, Eigen::OuterStride<>(ld));
    // Through the BLAS: g_in_blk (kt x p) += X_blkᵀ g_out_blk.
    if (use_blas(draws))
      return for_each_block(draws, [&](Index r0, Index n, Index k0, Index kt, Index s0, Index p) {
        blas::add_product(dgemm_, int(kt), int(p), int(n), x_.data() + r0 * k + k0, int(k), g_out.data() + r0 + s0 * ld,
                          int(ld), &g_in(k0, s0), int(ld));
      });
    for_each_block(draws, [&](Index r0, Index n, Index k0, Index kt, Index s0, Index p) {
      g_in.block(k0, s0, kt, p).noalias() += x_.block(r0, k0, n, kt).transpose() * g_out.block(r0, s0, n, p);
    });
  }

 private:
  // Calls f(r0, n, k0, kt, s0, p) for rows [r0, r0 + n) of X, its columns [k0, k0 + kt) and draws
  // [s0, s0 + p): row blocks outermost (each block of X is reused for every panel while in
  // cache), then panels of draws, then column tiles in order (k0 == 0 first).
  template <class F>
  void for_each_block(Index draws, F&& f) const {
    const Index k = x_.cols();
    const Index panel = std::min(draws, gemm_blocking::kMaxPanel);
    const Index tile = std::clamp<Index>(k, 1, gemm_blocking::kMaxTileK);
    const Index rows =
        use_blas(draws) ? gemm_blocking::blas_block_rows(tile, panel) : gemm_blocking::block_rows(tile, panel);
    for (Index r0 = 0; r0 < size; r0 += rows) {
      const Index n = std::min(rows, size - r0);
      for (Index s0 = 0; s0 < draws; s0 += panel) {
        const Index p = std::min(panel, draws - s0);
        for (Index k0 = 0; k0 < k; k0 += tile) f(r0, n, k0, std::min(tile, k - k0), s0, p);
      }
    }
  }

  // Below kMinBlasDraws draws the products are GEMV-like and Eigen's need no packing (at N = 10^4,
  // K = 50 the BLAS took 0.7-0.9x Eigen's time for S = 32 and about the same for S = 8).
  static constexpr Index kMinBlasDraws = 8;
  bool use_blas(Index draws) const { return dgemm_ && draws >= kMinBlasDraws && x_.cols() > 0; }

  // c (m x n, leading dimension ldc) [+]= op(A) b, with A the column-major view of X's rows at a
  // (leading dimension lda = K) and op given by trans_a ("T": X_blk). (X_blkᵀ b goes through
  // blas::add_product, which avoids OpenBLAS's allocating "N", "N" kernel.)
  void gemm(const char* trans_a, Index m, Index n, Index k, const double* a, Index lda, const double* b, Index ldb,
            bool accumulate, double* c, Index ldc) const {
    const int im = int(m), in = int(n), ik = int(k), ia = int(lda), ib = int(ldb), ic = int(ldc);
    const double one = 1.0, beta = accumulate ? 1.0 : 0.0;
    dgemm_(trans_a, "N", &im, &in, &ik, &one, a, &ia, b, &ib, &beta, c, &ic);
  }

  RowMatrix x_;
  Operand v_;
  blas::Dgemm dgemm_ = blas::current_dgemm();  // fixed when the node is built
};

class Gather final : public Node {
 public:
  Gather(Operand a, std::vector<Index> index) : a_(std::move(a)), index_(std::move(index)) {
    size = Index(index_.size());
  }

  void forward(Matrix& value) const override {
    for (Index s = 0; s < value.cols(); ++s)
      for (Index n = 0; n < size; ++n) value(row + n, s) = value(a_.row + index_[size_t(n)], s);
  }

  void backward(const Matrix&, Matrix& grad) const override {
    for (Index s = 0; s < grad.cols(); ++s)
      for (Index n = 0; n < size; ++n) grad(a_.row + index_[size_t(n)], s) += grad(row + n, s);
  }

 private:
  Operand a_;
  std::vector<Index> index_;
};

class Sum final : public Node {
 public:
  explicit Sum(Operand a) : a_(std::move(a)) { size = 1; }

  void forward(Matrix& value) const override {
    for (Index s = 0; s < value.cols(); ++s) value(row, s) = value.col(s).segment(a_.row, a_.size()).sum();
  }

  void backward(const Matrix&, Matrix& grad) const override {
    for (Index s = 0; s < grad.cols(); ++s) grad.col(s).segment(a_.row, a_.size()).array() += grad(row, s);
  }

 private:
  Operand a_;
};

// See make_segmented. Per draw, one pass per group (two for the normalisations); nothing is
// stored between forward and backward but the node's own output rows.
class Segmented final : public Node {
 public:
  Segmented(SegmentOp op, Operand a, std::vector<Index> index, std::vector<Index> offsets)
      : op_(op), a_(std::move(a)), index_(std::move(index)), offsets_(std::move(offsets)) {
    size = reduces() ? Index(offsets_.size()) - 1 : Index(index_.size());
  }

  bool reduces() const { return op_ == SegmentOp::Sum || op_ == SegmentOp::LogSumExp; }

  void forward(Matrix& value) const override {
    const Index groups = Index(offsets_.size()) - 1;
    for (Index s = 0; s < value.cols(); ++s) {
      const double* x = value.col(s).data() + a_.row;
      double* y = value.col(s).data() + row;
      for (Index j = 0; j < groups; ++j) {
        const Index begin = offsets_[size_t(j)], end = offsets_[size_t(j + 1)];
        switch (op_) {
          case SegmentOp::Sum: {
            double t = 0.0;
            for (Index k = begin; k < end; ++k) t += x[at(k)];
            y[j] = t;
            break;
          }
          case SegmentOp::LogSumExp:
            y[j] = log_sum_exp(x, begin, end);
            break;
          case SegmentOp::CumSum: {
            double t = 0.0;
            for (Index k = begin; k < end; ++k) y[at(k)] = t += x[at(k)];
            break;
          }
          case SegmentOp::LogSoftmax: {  // x - max - log(sum(exp(x - max)))
            const Shifted sh = shifted_sum(x, begin, end);
            if (std::isfinite(sh.max)) {
              const double log_sum = std::log(sh.sum);
              for (Index k = begin; k < end; ++k) y[at(k)] = (x[at(k)] - sh.max) - log_sum;
            } else {  // inf or NaN: as x - log_sum_exp(x)
              const double lse = log_sum_exp(x, begin, end);
              for (Index k = begin; k < end; ++k) y[at(k)] = x[at(k)] - lse;
            }
            break;
          }
          case SegmentOp::Softmax: {  // exp(x - max) / sum(exp(x - max))
            const Shifted sh = shifted_sum(x, begin, end);
            if (std::isfinite(sh.max)) {
              const double inv = 1.0 / sh.sum;
              for (Index k = begin; k < end; ++k) y[at(k)] = std::exp(x[at(k)] - sh.max) * inv;
            } else {
              const double lse = log_sum_exp(x, begin, end);
              for (Index k = begin; k < end; ++k) y[at(k)] = std::exp(x[at(k)] - lse);
            }
            break;
          }
        }
      }
    }
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    const Index groups = Index(offsets_.size()) - 1;
    for (Index s = 0; s < value.cols(); ++s) {
      const double* x = value.col(s).data() + a_.row;
      const double* y = value.col(s).data() + row;
      const double* gy = grad.col(s).data() + row;
      double* gx = grad.col(s).data() + a_.row;
      for (Index j = 0; j < groups; ++j) {
        const Index begin = offsets_[size_t(j)], end = offsets_[size_t(j + 1)];
        switch (op_) {
          case SegmentOp::Sum:
            for (Index k = begin; k < end; ++k) gx[at(k)] += gy[j];
            break;
          case SegmentOp::LogSumExp:  // d/dx_k = softmax_k = exp(x_k - lse)
            if (gy[j] != 0.0 && y[j] > -kInf)
              for (Index k = begin; k < end; ++k) gx[at(k)] += gy[j] * std::exp(x[at(k)] - y[j]);
            break;
          case SegmentOp::CumSum: {  // d/dx_k = the sum of the gradients of outputs k, k + 1, ...
            double t = 0.0;
            for (Index k = end - 1; k >= begin; --k) gx[at(k)] += t += gy[at(k)];
            break;
          }
          case SegmentOp::LogSoftmax: {  // g_k - softmax_k * sum(g)
            double t = 0.0;
            for (Index k = begin; k < end; ++k) t += gy[at(k)];
            for (Index k = begin; k < end; ++k) gx[at(k)] += gy[at(k)] - std::exp(y[at(k)]) * t;
            break;
          }
          case SegmentOp::Softmax: {  // y_k (g_k - sum(g y))
            double t = 0.0;
            for (Index k = begin; k < end; ++k) t += gy[at(k)] * y[at(k)];
            for (Index k = begin; k < end; ++k) gx[at(k)] += y[at(k)] * (gy[at(k)] - t);
            break;
          }
        }
      }
    }
  }

 private:
  Index at(Index k) const { return index_[size_t(k)]; }

  // A group's maximum and sum(exp(x - max)) (the sum only when the maximum is finite).
  struct Shifted {
    double max, sum;
  };
  Shifted shifted_sum(const double* x, Index begin, Index end) const {
    double m = -kInf;
    for (Index k = begin; k < end; ++k) m = std::max(m, x[at(k)]);
    double t = 0.0;
    if (std::isfinite(m))
      for (Index k = begin; k < end; ++k) t += std::exp(x[at(k)] - m);
    return {m, t};
  }

  // log(sum(exp(x))) over a group, shifted by its maximum; -inf for an empty group or all -inf.
  double log_sum_exp(const double* x, Index begin, Index end) const {
    double m = -kInf;
    for (Index k = begin; k < end; ++k) m = std::max(m, x[at(k)]);
    if (!std::isfinite(m)) {
      // +inf, -inf (all -inf or empty) or NaN: the sum passes NaN on
      double t = 0.0;
      for (Index k = begin; k < end; ++k) t += x[at(k)];
      return std::isnan(t) ? t : m;
    }
    double t = 0.0;
    for (Index k = begin; k < end; ++k) t += std::exp(x[at(k)] - m);
    return m + std::log(t);
  }

  SegmentOp op_;
  Operand a_;
  std::vector<Index> index_, offsets_;
};

class Concat final : public Node {
 public:
  Concat(std::vector<Operand> parts, std::vector<Index> part, std::vector<Index> element)
      : parts_(std::move(parts)), part_(std::move(part)), element_(std::move(element)) {
    size = Index(part_.size());
  }

  void forward(Matrix& value) const override {
    for (Index s = 0; s < value.cols(); ++s)
      for (Index n = 0; n < size; ++n) {
        const Operand& p = parts_[size_t(part_[size_t(n)])];
        const Index e = element_[size_t(n)];
        value(row + n, s) = p.is_param ? value(p.row + e, s) : p.data[e];
      }
  }

  void backward(const Matrix&, Matrix& grad) const override {
    for (Index s = 0; s < grad.cols(); ++s)
      for (Index n = 0; n < size; ++n) {
        const Operand& p = parts_[size_t(part_[size_t(n)])];
        if (p.is_param) grad(p.row + element_[size_t(n)], s) += grad(row + n, s);
      }
  }

 private:
  std::vector<Operand> parts_;
  std::vector<Index> part_, element_;
};

// A B per draw, coefficient by coefficient (Eigen's lazy product: no packing, so no allocation).
class MatMul final : public Node {
 public:
  MatMul(Operand a, Operand b, Index n, Index k, Index m) : a_(std::move(a)), b_(std::move(b)), n_(n), k_(k), m_(m) {
    size = n * m;
  }

  void forward(Matrix& value) const override {
    for (Index s = 0; s < value.cols(); ++s) {
      RowMap out(value.col(s).data() + row, n_, m_);
      out.noalias() = matrix(a_, value, s, n_, k_).lazyProduct(matrix(b_, value, s, k_, m_));
    }
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    for (Index s = 0; s < value.cols(); ++s) {
      const ConstRowMap g(grad.col(s).data() + row, n_, m_);
      if (a_.is_param)
        RowMap(grad.col(s).data() + a_.row, n_, k_).noalias() +=
            g.lazyProduct(matrix(b_, value, s, k_, m_).transpose());
      if (b_.is_param)
        RowMap(grad.col(s).data() + b_.row, k_, m_).noalias() +=
            matrix(a_, value, s, n_, k_).transpose().lazyProduct(g);
    }
  }

 private:
  using RowMap = Eigen::Map<RowMatrix>;
  using ConstRowMap = Eigen::Map<const RowMatrix>;

  static ConstRowMap matrix(const Operand& op, const Matrix& value, Index s, Index rows, Index cols) {
    return {op.is_param ? value.col(s).data() + op.row : op.data.data(), rows, cols};
  }

  Operand a_, b_;
  Index n_, k_, m_;
};

class Target final : public Kernel {
 public:
  explicit Target(Operand a) : a_(std::move(a)) {}

  void evaluate(const Batch& b) const override {
    const Index n = a_.size();
    for (Index s = 0; s < b.draws; ++s) {
      b.lp[s] += ConstArrayMap(b.value + s * b.ld + a_.row, n).sum();
      ArrayMap(b.grad + s * b.ld + a_.row, n) += 1.0;
    }
  }

 private:
  Operand a_;
};

void require_rows(const Operand& op, const char* what) {
  if (!op.is_param) throw std::invalid_argument(std::string(what) + " needs a parameter or expression input");
}

}  // namespace

std::unique_ptr<Node> make_binary(BinaryOp op, Operand a, Operand b, Index size) {
  if (!a.is_param && !b.is_param) throw std::invalid_argument("an expression needs at least one parameter input");
  return std::make_unique<Binary>(op, std::move(a), std::move(b), size);
}

std::unique_ptr<Node> make_unary(UnaryOp op, Operand a) {
  require_rows(a, "a function of an expression");
  return std::make_unique<Unary>(op, std::move(a));
}

std::unique_ptr<Node> make_matvec(RowMatrix x, Operand v) {
  require_rows(v, "X @ v");
  if (x.cols() != v.size())
    throw std::invalid_argument("X @ v: X has " + std::to_string(x.cols()) + " columns but v has " +
                                std::to_string(v.size()) + " elements");
  if (!x.allFinite()) throw std::invalid_argument("X @ v: X contains NaN or inf");
  return std::make_unique<MatVec>(std::move(x), std::move(v));
}

std::unique_ptr<Node> make_gather(Operand a, std::vector<Index> index) {
  require_rows(a, "indexing");
  for (Index i : index)
    if (i < 0 || i >= a.size())
      throw std::invalid_argument("index " + std::to_string(i) + " is out of bounds for " + std::to_string(a.size()) +
                                  " elements");
  return std::make_unique<Gather>(std::move(a), std::move(index));
}

std::unique_ptr<Node> make_sum(Operand a) {
  require_rows(a, "sum");
  return std::make_unique<Sum>(std::move(a));
}

std::unique_ptr<Node> make_segmented(SegmentOp op, Operand a, std::vector<Index> index, std::vector<Index> offsets) {
  require_rows(a, "a reduction");
  if (offsets.empty() || offsets.front() != 0 || offsets.back() != Index(index.size()))
    throw std::invalid_argument("a reduction's group offsets must run from 0 to the number of indices");
  for (size_t j = 1; j < offsets.size(); ++j)
    if (offsets[j] < offsets[j - 1]) throw std::invalid_argument("a reduction's group offsets must not decrease");
  std::vector<char> seen(size_t(a.size()), 0);
  for (Index i : index) {
    if (i < 0 || i >= a.size())
      throw std::invalid_argument("index " + std::to_string(i) + " is out of bounds for " + std::to_string(a.size()) +
                                  " elements");
    seen[size_t(i)] = 1;
  }
  const bool reduces = op == SegmentOp::Sum || op == SegmentOp::LogSumExp;
  if (!reduces && (Index(index.size()) != a.size() || std::find(seen.begin(), seen.end(), 0) != seen.end()))
    throw std::invalid_argument("cumsum, softmax and log_softmax need groups that cover every element once");
  return std::make_unique<Segmented>(op, std::move(a), std::move(index), std::move(offsets));
}

std::unique_ptr<Node> make_concat(std::vector<Operand> parts, std::vector<Index> part, std::vector<Index> element) {
  if (part.size() != element.size()) throw std::invalid_argument("concatenate: part and element differ in length");
  if (std::none_of(parts.begin(), parts.end(), [](const Operand& p) { return p.is_param; }))
    throw std::invalid_argument("an expression needs at least one parameter input");
  for (size_t n = 0; n < part.size(); ++n) {
    if (part[n] < 0 || part[n] >= Index(parts.size())) throw std::invalid_argument("concatenate: part out of range");
    const Operand& p = parts[size_t(part[n])];
    if (element[n] < 0 || element[n] >= p.size() || (!p.is_param && element[n] >= p.data.size()))
      throw std::invalid_argument("concatenate: element out of range");
  }
  return std::make_unique<Concat>(std::move(parts), std::move(part), std::move(element));
}

std::unique_ptr<Node> make_matmul(Operand a, Operand b, Index n, Index k, Index m) {
  if (!a.is_param && !b.is_param) throw std::invalid_argument("an expression needs at least one parameter input");
  if (a.size() != n * k || b.size() != k * m)
    throw std::invalid_argument("A @ B: the operands' sizes do not match (" + std::to_string(n) + " x " +
                                std::to_string(k) + ") @ (" + std::to_string(k) + " x " + std::to_string(m) + ")");
  for (const Operand* op : {&a, &b})
    if (!op->is_param && (op->data.size() != op->size() || !op->data.allFinite()))
      throw std::invalid_argument("A @ B: data contains NaN or inf");
  return std::make_unique<MatMul>(std::move(a), std::move(b), n, k, m);
}

std::unique_ptr<Kernel> make_target(Operand a) {
  if (!a.is_param) throw std::invalid_argument("a factor needs a parameter or expression");
  return std::make_unique<Target>(std::move(a));
}

}  // namespace fastvi
