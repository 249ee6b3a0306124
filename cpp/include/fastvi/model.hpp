// A model: parameter blocks (with constraint transforms), expression nodes and bound kernel factors.
//
// The unconstrained vector zeta stacks the parameter blocks in declaration order. The value
// matrix (rows x S) holds every block of rows an operand can read: each parameter's constrained
// values and each expression node's output, in the order they were created. The log density of a
// batch of draws is the sum of the factors' log densities plus the transforms' log-Jacobians; its
// gradient is taken with respect to zeta.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "fastvi/expression.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/transform.hpp"

namespace fastvi {

struct ParamBlock {
  std::string name;
  std::vector<Index> shape;
  Index offset = 0;  // first coordinate in zeta
  Index row = 0;     // first row in the value matrix
  Index size = 1;    // values (rows of the value matrix)
  Index free = 1;    // coordinates of zeta: size, or fewer for a vector transform (a K-simplex has K - 1)
  Transform transform;
};

// Rows of the value matrix that operands can refer to: a parameter's or an expression node's.
struct RowBlock {
  std::string name;  // the parameter's name, or a description of the expression
  std::vector<Index> shape;
  Index row = 0;
  Index size = 1;
  double lower = -kInf, upper = kInf;  // bounds every value is known to respect
  bool is_param = false;
};

struct Factor {
  std::string label;  // how messages name the factor, e.g. "normal(x)"
  std::string kernel;
  std::unique_ptr<Kernel> impl;
};

// Everything one evaluation of a model on S draws writes to: sized once by Model::prepare, reused
// every step. Each fit and each log_density call has its own, so a model can be evaluated by
// several threads at once (the Model itself is only read).
struct ModelWorkspace {
  Matrix theta;                       // rows x S constrained values
  Matrix grad_theta;                  // rows x S
  Vector scratch;                     // the kernels' scratch, one aligned region per factor (Batch::scratch)
  std::vector<Index> factor_scratch;  // offset of each factor's region in `scratch`
  Index draws = -1;
  int threads = 0;
  Index subsample = 0;          // minibatch rows the scratch was sized for (0: none)
  std::uint64_t structure = 0;  // Model::structure() it was prepared for
  // The minibatch of the next evaluations (set by the caller, e.g. ElboEstimator): `subsample`
  // row numbers (Batch::rows), each row's terms weighted by row_weight, for every row-wise
  // factor. Null: every row.
  const Index* rows = nullptr;
  double row_weight = 1.0;
};

class Model {
 public:
  // Declares a parameter block; throws std::invalid_argument for a repeated name, a bad shape or
  // bad bounds. Returns its block id.
  Index add_param(const std::string& name, const std::vector<Index>& shape, double lower, double upper);
  // Declares a parameter block with a vector transform (Transform::vector's names); throws
  // std::invalid_argument, naming the parameter, for a shape the transform does not fit.
  Index add_param(const std::string& name, const std::vector<Index>& shape, const std::string& transform);

  // Adds an expression node with output shape `shape`; returns its block id.
  Index add_node(std::unique_ptr<Node> node, const std::string& name, const std::vector<Index>& shape, double lower,
                 double upper);

  // An operand (for a kernel input or a node) that reads block `block`, named `input`.
  Operand block_operand(const std::string& input, Index block) const;
  const RowBlock& block(Index id) const;

  // Binds a registered kernel. `operands` are named by the kernel's input names, in any order;
  // omitted inputs take the kernel's defaults. Validates names, shapes and supports and throws
  // std::invalid_argument with a message that names the factor and input at fault.
  // `rows_axis` (Model.add's rows=): make the factor row-wise along that axis of its broadcast
  // shape (negative counts from the end; only the leading axis is supported), so that minibatches
  // subsample it (Kernel::set_data_rows, data_rows()); the kernel must be element-wise.
  void add_factor(const std::string& kernel, std::vector<Operand> operands, const std::string& label,
                  std::optional<Index> rows_axis = std::nullopt);
  // Adds an expression node holding an element-wise kernel's log density per element (fv.logp):
  // the operands are matched, checked and broadcast as add_factor does; returns its block id.
  Index add_kernel_logp(const std::string& kernel, std::vector<Operand> operands, const std::string& label);
  // Adds a factor built outside the registry (Model.factor's make_target), listed as `kernel`.
  void add_bound_factor(const std::string& kernel, std::unique_ptr<Kernel> impl, const std::string& label);

  Index dim() const { return dim_; }           // length of zeta
  Index rows() const { return Index(rows_); }  // rows of the value matrix
  const std::vector<RowBlock>& blocks() const { return blocks_; }
  const std::vector<ParamBlock>& params() const { return params_; }
  const ParamBlock& param(const std::string& name) const;
  const std::vector<Factor>& factors() const { return factors_; }

  // Sizes `ws` for evaluations of `draws` draws on at most `threads` threads (allocates only if
  // the sizes changed). log_density requires a workspace prepared for its draws and threads.
  // `subsample` > 0 also sizes it for minibatches of that many rows (see data_rows()).
  void prepare(ModelWorkspace& ws, Index draws, int threads, Index subsample = 0) const;

  // The number of rows N that the model's row-wise factors (Kernel::data_rows: the GLMs, and
  // element-wise factors added with a rows axis) share,
  // which minibatches subsample; 0 if it has none. Throws std::invalid_argument, naming them, if
  // two row-wise factors have different numbers of rows.
  Index data_rows() const;

  // Thread safety. Evaluating (log_density, values) only reads the model; a caller that evaluates
  // holds evaluation_lock() for as long as it does (a fit: for the whole fit). Structural changes
  // (add_param, add_node, add_factor) fail with std::runtime_error while any such lock is held,
  // rather than pulling the model out from under a running fit. structure() counts the changes.
  std::shared_lock<std::shared_mutex> evaluation_lock() const { return std::shared_lock(mutex_); }
  std::uint64_t structure() const { return structure_; }

  // The value matrix (rows x S: constrained parameters and every node's output) at zeta (D x S).
  void values(const Eigen::Ref<const Matrix>& zeta, Matrix& value) const;
  // Inverse of constrain for one point. theta stacks the parameters' values in declaration order
  // (values() total values), zeta is dim().
  void unconstrain(const Eigen::Ref<const Vector>& theta, Eigen::Ref<Vector> zeta) const;
  // The total size of the parameter blocks' values (dim() unless there are vector transforms).
  Index param_values() const { return param_values_; }

  // lp[s] = log p(theta_s) + log|J|(zeta_s); grad_zeta = d lp / d zeta. zeta is D x S, ws was
  // prepared for S draws and at least `threads` threads. Non-finite values are returned as they
  // are; the caller decides what to do.
  void log_density(const Eigen::Ref<const Matrix>& zeta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                   Eigen::Ref<Matrix> grad_zeta, int threads) const;

  // The factors' log density at constrained parameter values theta (param_values() x S, the
  // parameters' values stacked in declaration order; stacked like zeta without vector transforms),
  // without log-Jacobians, and its gradient with respect to theta: what the kernels compute, in the
  // space where they are defined (for checking kernels against finite differences).
  void log_density_constrained(const Eigen::Ref<const Matrix>& theta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                               Eigen::Ref<Matrix> grad_theta, int threads) const;

 private:
  std::vector<ParamBlock> params_;
  std::vector<RowBlock> blocks_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Factor> factors_;
  Index dim_ = 0;
  Index rows_ = 0;
  Index param_values_ = 0;
  std::uint64_t structure_ = 0;
  mutable std::shared_mutex mutex_;

  // add_factor's and add_kernel_logp's binding: the operands ordered as the kernel declares its
  // inputs, defaults filled in, names, shapes and supports checked, and (for an element-wise
  // kernel) broadcast to `shape`, which is left empty for other kernels.
  std::vector<Operand> bind_operands(const std::string& kernel, const KernelInfo& info, std::vector<Operand> operands,
                                     const std::string& label, std::vector<Index>& shape) const;

  // add_node's work, for callers that hold the change lock already.
  Index insert_node(std::unique_ptr<Node> node, const std::string& name, const std::vector<Index>& shape, double lower,
                    double upper);

  // Exclusive access for a structural change; throws if the model is being evaluated.
  std::unique_lock<std::shared_mutex> change_lock(const std::string& what);
  void check_workspace(const ModelWorkspace& ws, Index draws, int threads) const;
  Index add_param_block(const std::string& name, const std::vector<Index>& shape, const Transform& transform);
  // Runs the nodes and the factors on ws.theta (its parameter rows filled), adding to lp and
  // leaving d lp / d theta in ws.grad_theta.
  void evaluate_factors(ModelWorkspace& ws, Eigen::Ref<Vector> lp, int threads) const;
};

}  // namespace fastvi
