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

const ParamBlock& Model::add_param(const std::string& name, const std::vector<Index>& shape, double lower,
                                   double upper) {
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
  dim_ += block.size;
  params_.push_back(block);
  reserved_draws_ = -1;
  return params_.back();
}

const ParamBlock& Model::param(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return p;
  throw std::invalid_argument("no parameter named '" + name + "'");
}

void Model::reserve(Index draws) {
  if (draws == reserved_draws_) return;
  for (auto& f : factors_) f.impl->reserve(draws);
  reserved_draws_ = draws;
}

void Model::constrain(const Eigen::Ref<const Matrix>& zeta, Eigen::Ref<Matrix> theta) const {
  for (const auto& p : params_) {
    for (Index s = 0; s < zeta.cols(); ++s)
      for (Index i = p.offset; i < p.offset + p.size; ++i) theta(i, s) = p.transform.constrain(zeta(i, s));
  }
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
      ws.theta.middleRows(p.offset, p.size) = zeta.middleRows(p.offset, p.size);
      continue;
    }
    for (Index s = 0; s < draws; ++s)
      for (Index i = p.offset; i < p.offset + p.size; ++i) {
        const Transform::Jet jet = p.transform.jet(zeta(i, s));
        ws.theta(i, s) = jet.value;
        lp[s] += jet.log_jacobian;
      }
  }
  ws.grad_theta.setZero();
  Batch batch{ws.theta.data(), ws.grad_theta.data(), lp.data(), ws.theta.rows(), draws, threads};
  for (const auto& f : factors_) f.impl->evaluate(batch);
  // Backward through the transforms: d/d zeta = d/d theta * d theta/d zeta + d log|J| / d zeta.
  for (const auto& p : params_) {
    if (p.transform.kind == TransformKind::Identity) {
      grad_zeta.middleRows(p.offset, p.size) = ws.grad_theta.middleRows(p.offset, p.size);
      continue;
    }
    for (Index s = 0; s < draws; ++s)
      for (Index i = p.offset; i < p.offset + p.size; ++i) {
        const Transform::Jet jet = p.transform.jet(zeta(i, s));
        grad_zeta(i, s) = ws.grad_theta(i, s) * jet.dvalue + jet.dlog_jacobian;
      }
  }
}

}  // namespace fastvi
