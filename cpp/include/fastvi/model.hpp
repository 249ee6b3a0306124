// A model: parameter blocks (with constraint transforms) and bound kernel factors.
//
// The unconstrained vector zeta stacks the blocks in declaration order. The log density of a
// batch of draws is the sum of the factors' log densities at theta = transform(zeta) plus the
// transforms' log-Jacobians; its gradient is taken with respect to zeta.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fastvi/kernel.hpp"
#include "fastvi/transform.hpp"

namespace fastvi {

struct ParamBlock {
  std::string name;
  std::vector<Index> shape;
  Index offset = 0;  // first row in zeta and in Batch::value
  Index size = 1;
  Transform transform;
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
  // bad bounds. Returns the block (its offset is where it lives in zeta).
  const ParamBlock& add_param(const std::string& name, const std::vector<Index>& shape, double lower, double upper);

  // Binds a registered kernel. `operands` are named by the kernel's input names, in any order;
  // omitted inputs take the kernel's defaults. Validates names, shapes and supports and throws
  // std::invalid_argument with a message that names the factor and input at fault.
  void add_factor(const std::string& kernel, std::vector<Operand> operands, const std::string& label);

  Index dim() const { return dim_; }      // length of zeta
  Index rows() const { return dim_; }     // rows of the value matrix
  const std::vector<ParamBlock>& params() const { return params_; }
  const ParamBlock& param(const std::string& name) const;
  const std::vector<Factor>& factors() const { return factors_; }

  // Sizes the kernels' scratch for S draws per evaluation. Call before log_density.
  void reserve(Index draws);

  // theta = transform(zeta) for every block (rows x S into theta), without Jacobian terms.
  void constrain(const Eigen::Ref<const Matrix>& zeta, Eigen::Ref<Matrix> theta) const;
  // Inverse of constrain for one point.
  void unconstrain(const Eigen::Ref<const Vector>& theta, Eigen::Ref<Vector> zeta) const;

  // lp[s] = log p(theta_s) + log|J|(zeta_s); grad_zeta = d lp / d zeta. zeta is D x S.
  // Non-finite values are returned as they are; the caller decides what to do.
  void log_density(const Eigen::Ref<const Matrix>& zeta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                   Eigen::Ref<Matrix> grad_zeta, int threads) const;

 private:
  std::vector<ParamBlock> params_;
  std::vector<Factor> factors_;
  Index dim_ = 0;
  Index reserved_draws_ = -1;
};

}  // namespace fastvi
