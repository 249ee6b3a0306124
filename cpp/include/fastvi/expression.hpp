// Expression nodes: deterministic functions of parameters, evaluated for a whole batch of draws.
//
// A node owns rows [row, row + size) of the model's value matrix. After the constraint
// transforms, nodes run forward in creation order (which is topological: a node's inputs exist
// before it), kernels read their rows like any parameter's, and after the kernels the nodes run
// backward in reverse order, adding their rows' gradients into their inputs' rows (reverse-mode
// differentiation over the batch, with no per-draw or per-node allocation).
#pragma once

#include <memory>
#include <vector>

#include "fastvi/operand.hpp"

namespace fastvi {

class Node {
 public:
  virtual ~Node() = default;
  // Writes this node's rows of `value` for every draw.
  virtual void forward(Matrix& value) const = 0;
  // Adds d lp / d(inputs) given d lp / d(this node's rows) in `grad`.
  virtual void backward(const Matrix& value, Matrix& grad) const = 0;

  Index row = 0;   // set by the model when the node is added
  Index size = 0;  // number of output elements
};

enum class BinaryOp { Add, Sub, Mul, Div };
enum class UnaryOp { Neg, Exp, Log, Log1pExp, InvLogit };

// Element-wise a (op) b; both operands already broadcast to `size` elements.
std::unique_ptr<Node> make_binary(BinaryOp op, Operand a, Operand b, Index size);
// Element-wise f(a) for a parameter or node operand.
std::unique_ptr<Node> make_unary(UnaryOp op, Operand a);
// X v for a data matrix X (N x K, row-major) and a K-element parameter or node operand: GEMMs over
// all draws forward, X^T times the row gradients backward, cut into blocks small enough that
// Eigen never heap-allocates (see MatVec in expression.cpp).
std::unique_ptr<Node> make_matvec(RowMatrix x, Operand v);
// out[n] = a[index[n]] (integer indexing and slicing, flattened); backward scatters.
std::unique_ptr<Node> make_gather(Operand a, std::vector<Index> index);
// The sum of all of a's elements.
std::unique_ptr<Node> make_sum(Operand a);

}  // namespace fastvi
