// A model: parameter blocks (with constraint transforms), expression nodes and bound kernel factors.
//
// The unconstrained vector zeta stacks the parameter blocks in declaration order. The value
// matrix (rows x S) holds every block of rows an operand can read: each parameter's constrained
// values and each expression node's output, in the order they were created. The log density of a
// batch of draws is the sum of the factors' log densities plus the transforms' log-Jacobians; its
// gradient is taken with respect to zeta.
#pragma once

#include <memory>
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
  Index size = 1;
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

// Scratch for evaluating a model on S draws; sized once, reused every step.
struct ModelWorkspace {
  Matrix theta;       // rows x S constrained values
  Matrix grad_theta;  // rows x S
  Vector lp;          // S
  void resize(Index rows, Index draws);
};

class Model {
 public:
  // Declares a parameter block; throws std::invalid_argument for a repeated name, a bad shape or
  // bad bounds. Returns its block id.
  Index add_param(const std::string& name, const std::vector<Index>& shape, double lower, double upper);

  // Adds an expression node with output shape `shape`; returns its block id.
  Index add_node(std::unique_ptr<Node> node, const std::string& name, const std::vector<Index>& shape,
                 double lower, double upper);

  // An operand (for a kernel input or a node) that reads block `block`, named `input`.
  Operand block_operand(const std::string& input, Index block) const;
  const RowBlock& block(Index id) const;

  // Binds a registered kernel. `operands` are named by the kernel's input names, in any order;
  // omitted inputs take the kernel's defaults. Validates names, shapes and supports and throws
  // std::invalid_argument with a message that names the factor and input at fault.
  void add_factor(const std::string& kernel, std::vector<Operand> operands, const std::string& label);

  Index dim() const { return dim_; }                  // length of zeta
  Index rows() const { return Index(rows_); }         // rows of the value matrix
  const std::vector<RowBlock>& blocks() const { return blocks_; }
  const std::vector<ParamBlock>& params() const { return params_; }
  const ParamBlock& param(const std::string& name) const;
  const std::vector<Factor>& factors() const { return factors_; }

  // Sizes the kernels' scratch for S draws per evaluation. Call before log_density.
  void reserve(Index draws);

  // The value matrix (rows x S: constrained parameters and every node's output) at zeta (D x S).
  void values(const Eigen::Ref<const Matrix>& zeta, Matrix& value) const;
  // Inverse of constrain for one point.
  void unconstrain(const Eigen::Ref<const Vector>& theta, Eigen::Ref<Vector> zeta) const;

  // lp[s] = log p(theta_s) + log|J|(zeta_s); grad_zeta = d lp / d zeta. zeta is D x S.
  // Non-finite values are returned as they are; the caller decides what to do.
  void log_density(const Eigen::Ref<const Matrix>& zeta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                   Eigen::Ref<Matrix> grad_zeta, int threads) const;

  // The factors' log density at constrained parameter values theta (D x S, stacked like zeta),
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
  Index reserved_draws_ = -1;
};

}  // namespace fastvi
