#include "fastvi/expression.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

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

class Binary final : public Node {
 public:
  Binary(BinaryOp op, Operand a, Operand b, Index n) : op_(op), a_(std::move(a)), b_(std::move(b)) {
    size = n;
    whole_draw_ = n >= kMinWholeDraw && a_.whole_draw() && b_.whole_draw();
  }

  void forward(Matrix& value) const override {
    const Batch v = view(value, nullptr);
    if (whole_draw_) return forward_whole_draws(v, value);
    for (Index s = 0; s < v.draws; ++s)
      for (Index n = 0; n < size; ++n) {
        const double x = a_.value(v, n, s), y = b_.value(v, n, s);
        double out = 0.0;
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
        }
        value(row + n, s) = out;
      }
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    const Batch v = view(value, &grad);
    if (whole_draw_) return backward_whole_draws(v, value, grad);
    const bool da = a_.is_param, db = b_.is_param;
    for (Index s = 0; s < v.draws; ++s)
      for (Index n = 0; n < size; ++n) {
        const double g = grad(row + n, s);
        switch (op_) {
          case BinaryOp::Add:
            if (da) a_.add_grad(v, n, s, g);
            if (db) b_.add_grad(v, n, s, g);
            break;
          case BinaryOp::Sub:
            if (da) a_.add_grad(v, n, s, g);
            if (db) b_.add_grad(v, n, s, -g);
            break;
          case BinaryOp::Mul:
            if (da) a_.add_grad(v, n, s, g * b_.value(v, n, s));
            if (db) b_.add_grad(v, n, s, g * a_.value(v, n, s));
            break;
          case BinaryOp::Div: {
            const double y = b_.value(v, n, s);
            if (da) a_.add_grad(v, n, s, g / y);
            if (db) b_.add_grad(v, n, s, -g * value(row + n, s) / y);  // d(x/y)/dy = -(x/y)/y
            break;
          }
        }
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
    whole_draw_ = size >= kMinWholeDraw;
  }

  void forward(Matrix& value) const override {
    if (whole_draw_) return forward_whole_draws(value);
    for (Index s = 0; s < value.cols(); ++s)
      for (Index n = 0; n < size; ++n) {
        const double x = value(a_.row + n, s);
        double out = 0.0;
        switch (op_) {
          case UnaryOp::Neg:
            out = -x;
            break;
          case UnaryOp::Exp:
            out = std::exp(x);
            break;
          case UnaryOp::Log:
            out = std::log(x);
            break;
          case UnaryOp::Log1pExp:
            out = math::log1p_exp(x);
            break;
          case UnaryOp::InvLogit:
            out = math::inv_logit(x);
            break;
        }
        value(row + n, s) = out;
      }
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    if (whole_draw_) return backward_whole_draws(value, grad);
    for (Index s = 0; s < value.cols(); ++s)
      for (Index n = 0; n < size; ++n) {
        const double x = value(a_.row + n, s), y = value(row + n, s), g = grad(row + n, s);
        double d = 0.0;  // dy/dx, from y where that is cheaper
        switch (op_) {
          case UnaryOp::Neg:
            d = -1.0;
            break;
          case UnaryOp::Exp:
            d = y;
            break;
          case UnaryOp::Log:
            d = 1.0 / x;
            break;
          case UnaryOp::Log1pExp:
            d = math::inv_logit(x);
            break;
          case UnaryOp::InvLogit:
            d = y * (1.0 - y);
            break;
        }
        grad(a_.row + n, s) += g * d;
      }
  }

 private:
  // The same, a draw at a time with Eigen arrays.
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
      }
    }
  }

  UnaryOp op_;
  Operand a_;
  bool whole_draw_ = false;  // enough elements for the vectorised path
};

// X v for every draw, cut into blocks so that it never allocates.
//
// Why blocked: one GEMM over the whole N x S block makes Eigen pack its operands in blocks sized
// from the whole problem, on the heap once they exceed EIGEN_STACK_ALLOCATION_LIMIT; blocked as
// the fused GLM kernels are (gemm_blocking.hpp), Eigen keeps them on the stack. The node runs
// serially; the blocking depends on K and S only, never on threads.
class MatVec final : public Node {
 public:
  MatVec(RowMatrix x, Operand v) : x_(std::move(x)), v_(std::move(v)) { size = x_.rows(); }

  void forward(Matrix& value) const override {
    const Index ld = value.rows(), draws = value.cols(), k = x_.cols();
    StridedMap out(value.data() + row, size, draws, Eigen::OuterStride<>(ld));
    ConstStridedMap in(value.data() + v_.row, k, draws, Eigen::OuterStride<>(ld));
    if (k == 0) out.setZero();  // no column tiles below
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
    const Index rows = gemm_blocking::block_rows(tile, panel);
    for (Index r0 = 0; r0 < size; r0 += rows) {
      const Index n = std::min(rows, size - r0);
      for (Index s0 = 0; s0 < draws; s0 += panel) {
        const Index p = std::min(panel, draws - s0);
        for (Index k0 = 0; k0 < k; k0 += tile) f(r0, n, k0, std::min(tile, k - k0), s0, p);
      }
    }
  }

  RowMatrix x_;
  Operand v_;
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

}  // namespace fastvi
