#include "fastvi/model.hpp"

#include <stdexcept>

namespace fastvi {

void ModelWorkspace::resize(Index rows, Index draws) {
  if (theta.rows() != rows || theta.cols() != draws) {
    theta.resize(rows, draws);
    grad_theta.resize(rows, draws);
    lp.resize(draws);
  }
}

Index Model::add_param(const std::string& name, const std::vector<Index>& shape, double lower, double upper) {
  if (name.empty()) throw std::invalid_argument("parameter name must not be empty");
  for (const auto& p : params_)
    if (p.name == name) throw std::invalid_argument("parameter '" + name + "' is already declared");
  ParamBlock block;
  block.name = name;
  block.shape = shape;
  block.size = 1;
  for (Index d : shape) {
    if (d < 1) throw std::invalid_argument("parameter '" + name + "': every dimension of shape must be >= 1");
    block.size *= d;
  }
  try {
    block.transform = Transform::from_bounds(lower, upper);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("parameter '" + name + "': " + e.what());
  }
  block.offset = dim_;
  block.row = rows_;
  dim_ += block.size;
  rows_ += block.size;
  params_.push_back(block);
  blocks_.push_back({name, shape, block.row, block.size, lower, upper, true});
  reserved_draws_ = -1;
  return Index(blocks_.size()) - 1;
}

Index Model::add_node(std::unique_ptr<Node> node, const std::string& name, const std::vector<Index>& shape,
                      double lower, double upper) {
  Index size = 1;
  for (Index d : shape) size *= d;
  if (size != node->size) throw std::logic_error("expression node size does not match its shape");
  node->row = rows_;
  blocks_.push_back({name, shape, rows_, size, lower, upper, false});
  rows_ += size;
  nodes_.push_back(std::move(node));
  reserved_draws_ = -1;
  return Index(blocks_.size()) - 1;
}

const RowBlock& Model::block(Index id) const {
  if (id < 0 || id >= Index(blocks_.size())) throw std::invalid_argument("no block with id " + std::to_string(id));
  return blocks_[size_t(id)];
}

Operand Model::block_operand(const std::string& input, Index id) const {
  const RowBlock& b = block(id);
  Operand op;
  op.name = input;
  op.source = b.name;
  op.is_param = true;
  op.shape = b.shape;
  op.row = b.row;
  op.lower = b.lower;
  op.upper = b.upper;
  return op;
}

const ParamBlock& Model::param(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return p;
  throw std::invalid_argument("no parameter named '" + name + "'");
}

void Model::reserve(Index draws) {
  if (draws == reserved_draws_) return;
  for (auto& n : nodes_) n->reserve(draws);
  for (auto& f : factors_) f.impl->reserve(draws);
  reserved_draws_ = draws;
}

void Model::values(const Eigen::Ref<const Matrix>& zeta, Matrix& value) const {
  value.resize(rows(), zeta.cols());
  for (const auto& p : params_)
    for (Index s = 0; s < zeta.cols(); ++s)
      for (Index i = 0; i < p.size; ++i) value(p.row + i, s) = p.transform.constrain(zeta(p.offset + i, s));
  for (const auto& n : nodes_) n->forward(value);
}

void Model::unconstrain(const Eigen::Ref<const Vector>& theta, Eigen::Ref<Vector> zeta) const {
  for (const auto& p : params_)
    for (Index i = p.offset; i < p.offset + p.size; ++i) zeta[i] = p.transform.unconstrain(theta[i]);
}

void Model::log_density(const Eigen::Ref<const Matrix>& zeta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                        Eigen::Ref<Matrix> grad_zeta, int threads) const {
  const Index draws = zeta.cols();
  if (reserved_draws_ != draws) throw std::logic_error("Model::reserve was not called for this number of draws");
  ws.resize(rows(), draws);
  lp.setZero();
  // Forward: constrain, collecting log-Jacobians. The backward pass recomputes each transform's
  // derivatives rather than storing them: that is cheaper than a second D x S buffer.
  for (const auto& p : params_) {
    if (p.transform.kind == TransformKind::Identity) {
      ws.theta.middleRows(p.row, p.size) = zeta.middleRows(p.offset, p.size);
      continue;
    }
    for (Index s = 0; s < draws; ++s)
      for (Index i = 0; i < p.size; ++i) {
        const Transform::Jet jet = p.transform.jet(zeta(p.offset + i, s));
        ws.theta(p.row + i, s) = jet.value;
        lp[s] += jet.log_jacobian;
      }
  }
  for (const auto& n : nodes_) n->forward(ws.theta);
  ws.grad_theta.setZero();
  Batch batch{ws.theta.data(), ws.grad_theta.data(), lp.data(), ws.theta.rows(), draws, threads};
  for (const auto& f : factors_) f.impl->evaluate(batch);
  for (auto n = nodes_.rbegin(); n != nodes_.rend(); ++n) (*n)->backward(ws.theta, ws.grad_theta);
  // Backward through the transforms: d/d zeta = d/d theta * d theta/d zeta + d log|J| / d zeta.
  for (const auto& p : params_) {
    if (p.transform.kind == TransformKind::Identity) {
      grad_zeta.middleRows(p.offset, p.size) = ws.grad_theta.middleRows(p.row, p.size);
      continue;
    }
    for (Index s = 0; s < draws; ++s)
      for (Index i = 0; i < p.size; ++i) {
        const Transform::Jet jet = p.transform.jet(zeta(p.offset + i, s));
        grad_zeta(p.offset + i, s) = ws.grad_theta(p.row + i, s) * jet.dvalue + jet.dlog_jacobian;
      }
  }
}

void Model::log_density_constrained(const Eigen::Ref<const Matrix>& theta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                                    Eigen::Ref<Matrix> grad_theta, int threads) const {
  const Index draws = theta.cols();
  if (reserved_draws_ != draws) throw std::logic_error("Model::reserve was not called for this number of draws");
  ws.resize(rows(), draws);
  lp.setZero();
  for (const auto& p : params_) ws.theta.middleRows(p.row, p.size) = theta.middleRows(p.offset, p.size);
  for (const auto& n : nodes_) n->forward(ws.theta);
  ws.grad_theta.setZero();
  Batch batch{ws.theta.data(), ws.grad_theta.data(), lp.data(), ws.theta.rows(), draws, threads};
  for (const auto& f : factors_) f.impl->evaluate(batch);
  for (auto n = nodes_.rbegin(); n != nodes_.rend(); ++n) (*n)->backward(ws.theta, ws.grad_theta);
  for (const auto& p : params_) grad_theta.middleRows(p.offset, p.size) = ws.grad_theta.middleRows(p.row, p.size);
}

}  // namespace fastvi
