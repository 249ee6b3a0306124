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

#include "fastvi/kernel.hpp"
#include "fastvi/operand.hpp"

namespace fastvi {

class Node {
 public:
  virtual ~Node() = default;
  // Writes this node's rows of `value` for every draw.
  virtual void forward(Matrix& value) const = 0;
  // Adds d lp / d(inputs) given d lp / d(this node's rows) in `grad`. It may overwrite its own
  // rows of `grad` (as scratch: nothing reads them after this node's backward pass), never others'.
  virtual void backward(const Matrix& value, Matrix& grad) const = 0;

  Index row = 0;   // set by the model when the node is added
  Index size = 0;  // number of output elements
};

// Pow: a ** b; LogAddExp: log(exp(a) + exp(b)), max-shifted.
enum class BinaryOp { Add, Sub, Mul, Div, Pow, LogAddExp };
// Log1m: log(1 - x); LogInvLogit: log(inv_logit(x)) = -log1p_exp(-x); Logit: log(x / (1 - x)).
enum class UnaryOp {
  Neg,
  Exp,
  Log,
  Log1pExp,
  InvLogit,
  Sqrt,
  Square,
  Abs,
  Log1m,
  LGamma,
  Log1p,
  Expm1,
  Tanh,
  Logit,
  LogInvLogit
};
// Operations over groups of an operand's elements (see make_segmented). Sum and LogSumExp reduce
// each group to one element; CumSum, LogSoftmax and Softmax keep the operand's layout.
enum class SegmentOp { Sum, LogSumExp, CumSum, LogSoftmax, Softmax };

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
// `op` over groups of a's elements: group j is a's elements index[offsets[j]] ..
// index[offsets[j + 1] - 1], in that order (the order a cumulative sum runs in). A reduction
// (Sum, LogSumExp) has one output element per group; the others have a's layout (element
// index[k] of the output belongs to element index[k] of a), and their groups must cover every
// element of a exactly once. Python computes the layout from an axis (fv.sum(x, axis=...)).
std::unique_ptr<Node> make_segmented(SegmentOp op, Operand a, std::vector<Index> index, std::vector<Index> offsets);
// out[n] = parts[part[n]] element element[n]: concatenation and stacking of parameters, nodes
// and data (a data part's elements are constants).
std::unique_ptr<Node> make_concat(std::vector<Operand> parts, std::vector<Index> part, std::vector<Index> element);
// A per-draw product with parameter matrices: out (N x M, row-major) = A B with A an N x K and B
// a K x M operand, each data or a block of rows (row-major), at least one of them a block.
std::unique_ptr<Node> make_matmul(Operand a, Operand b, Index n, Index k, Index m);

// fv.logp: element n is the log density an element-wise kernel gives broadcast element n of its
// operands (already bound and broadcast to `size` elements by Model::add_kernel_logp), with the
// kernel's own partials. Works for any element-wise kernel, built-in or registered by a user, at
// the cost of one kernel call per element per pass (see kernel_logp.cpp).
std::unique_ptr<Node> make_kernel_logp(const KernelInfo& info, std::vector<Operand> operands, Index size);
// Linear algebra (linalg_nodes.cpp), on (N, N) blocks stored row-major, per draw.
// K[i, j] = alpha^2 exp(-|x_i - x_j|^2 / (2 rho^2)) (Stan's gp_exp_quad_cov) for the N points in the
// rows of x (N x D data); alpha and rho are scalar operands, at least one of them a parameter.
std::unique_ptr<Node> make_exp_quad_cov(const RowMatrix& x, Operand alpha, Operand rho);
// K + diag(d) for an (N, N) operand K and a scalar or (N,) operand d (data or parameters).
std::unique_ptr<Node> make_add_diag(Operand k, Operand d);
// The lower-triangular Cholesky factor of (K + K^T) / 2 for an (N, N) parameter or node operand K;
// NaN in every element for a draw where that is not positive-definite.
std::unique_ptr<Node> make_cholesky(Operand k);

// The kernel behind Model.factor: adds the sum of a block's elements to each draw's log density
// (and 1 to each element's gradient).
std::unique_ptr<Kernel> make_target(Operand a);

}  // namespace fastvi
