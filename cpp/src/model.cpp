#include "fastvi/model.hpp"

#include <algorithm>
#include <stdexcept>

#include "fastvi/broadcast.hpp"
#include "fastvi/parallel.hpp"

namespace fastvi {

namespace {

// Kernel scratch regions start on a 64-byte boundary relative to the (Eigen-aligned) start of the
// workspace's scratch, so that each kernel sees the same alignment in every workspace.
constexpr Index kScratchAlign = 8;  // doubles
Index align_up(Index n) { return (n + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }

// Element (row, col) of a column-major matrix view, as a pointer (a vector transform works on the
// contiguous rows of one column).
template <class M>
auto at(M& m, Index row, Index col) {
  return m.data() + col * m.outerStride() + row;
}

// Rows of the value matrix (or coordinates of zeta) after adding `size` more, checked.
Index grown(Index current, Index size, const std::string& what) {
  if (size > kMaxElements - current)
    throw std::invalid_argument(what + ": the model would have more than 2**40 values");
  return current + size;
}

}  // namespace

std::unique_lock<std::shared_mutex> Model::change_lock(const std::string& what) {
  std::unique_lock<std::shared_mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock())
    throw std::runtime_error(what +
                             ": the model is being fitted or evaluated in another thread; it cannot change "
                             "until that finishes (build the model first, or build one model per thread)");
  ++structure_;
  return lock;
}

Index Model::add_param(const std::string& name, const std::vector<Index>& shape, double lower, double upper) {
  if (name.empty()) throw std::invalid_argument("parameter name must not be empty");
  Transform transform;
  try {
    transform = Transform::from_bounds(lower, upper);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("parameter '" + name + "': " + e.what());
  }
  return add_param_block(name, shape, transform);
}

Index Model::add_param(const std::string& name, const std::vector<Index>& shape, const std::string& transform) {
  if (name.empty()) throw std::invalid_argument("parameter name must not be empty");
  for (Index d : shape)
    if (d < 1) throw std::invalid_argument("parameter '" + name + "': every dimension of shape must be >= 1");
  Transform t;
  try {
    t = Transform::vector(transform, shape);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("parameter '" + name + "': " + e.what());
  }
  return add_param_block(name, shape, t);
}

Index Model::add_param_block(const std::string& name, const std::vector<Index>& shape, const Transform& transform) {
  const auto lock = change_lock("parameter '" + name + "'");
  for (const auto& p : params_)
    if (p.name == name) throw std::invalid_argument("parameter '" + name + "' is already declared");
  ParamBlock block;
  block.name = name;
  block.shape = shape;
  for (Index d : shape)
    if (d < 1) throw std::invalid_argument("parameter '" + name + "': every dimension of shape must be >= 1");
  block.size = shape_size(shape, "parameter '" + name + "'");
  block.transform = transform;
  block.free = transform.free_size(block.size);
  const Index new_dim = grown(dim_, block.free, "parameter '" + name + "'");
  const Index new_rows = grown(rows_, block.size, "parameter '" + name + "'");
  const Index new_values = grown(param_values_, block.size, "parameter '" + name + "'");
  block.offset = dim_;
  block.row = rows_;
  dim_ = new_dim;
  rows_ = new_rows;
  param_values_ = new_values;
  params_.push_back(block);
  blocks_.push_back({name, shape, block.row, block.size, transform.lower, transform.upper, true});
  return Index(blocks_.size()) - 1;
}

Index Model::add_node(std::unique_ptr<Node> node, const std::string& name, const std::vector<Index>& shape,
                      double lower, double upper) {
  const auto lock = change_lock(name);
  return insert_node(std::move(node), name, shape, lower, upper);
}

Index Model::insert_node(std::unique_ptr<Node> node, const std::string& name, const std::vector<Index>& shape,
                         double lower, double upper) {
  const Index size = shape_size(shape, name);
  if (size != node->size) throw std::logic_error("expression node size does not match its shape");
  const Index new_rows = grown(rows_, size, name);
  node->row = rows_;
  blocks_.push_back({name, shape, rows_, size, lower, upper, false});
  rows_ = new_rows;
  nodes_.push_back(std::move(node));
  return Index(blocks_.size()) - 1;
}

void Model::add_bound_factor(const std::string& kernel, std::unique_ptr<Kernel> impl, const std::string& label) {
  const auto lock = change_lock(label);
  Factor f;
  f.label = label;
  f.kernel = kernel;
  f.impl = std::move(impl);
  factors_.push_back(std::move(f));
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

void Model::prepare(ModelWorkspace& ws, Index draws, int threads, Index subsample) const {
  threads = std::max(threads, 1);
  if (ws.draws == draws && ws.threads >= threads && ws.subsample == subsample && ws.structure == structure_ &&
      ws.factor_scratch.size() == factors_.size() + 1)
    return;
  ws.theta.resize(rows(), draws);
  ws.grad_theta.resize(rows(), draws);
  ws.factor_scratch.assign(factors_.size() + 1, 0);
  Index total = 0;
  for (size_t f = 0; f < factors_.size(); ++f) {
    ws.factor_scratch[f] = total;
    const Kernel& k = *factors_[f].impl;
    Index size = k.scratch_size(draws, threads);
    if (subsample > 0 && k.data_rows() > 0) size = std::max(size, k.subsample_scratch_size(draws, threads, subsample));
    total += align_up(size);
  }
  ws.factor_scratch.back() = total;
  ws.scratch.setZero(total);
  ws.draws = draws;
  ws.threads = threads;
  ws.subsample = subsample;
  ws.rows = nullptr;
  ws.structure = structure_;
}

Index Model::data_rows() const {
  Index n = 0;
  const Factor* first = nullptr;
  for (const auto& f : factors_) {
    const Index rows = f.impl->data_rows();
    if (rows == 0) continue;
    if (first && rows != n)
      throw std::invalid_argument("minibatches need every row-wise factor to have the same rows, but '" + first->label +
                                  "' has " + std::to_string(n) + " and '" + f.label + "' has " + std::to_string(rows));
    if (!first) first = &f;
    n = rows;
  }
  return n;
}

void Model::values(const Eigen::Ref<const Matrix>& zeta, Matrix& value) const {
  value.resize(rows(), zeta.cols());
  for (const auto& p : params_) {
    const Transform& t = p.transform;
    for (Index s = 0; s < zeta.cols(); ++s) {
      if (t.elementwise()) {
        for (Index i = 0; i < p.size; ++i) value(p.row + i, s) = t.constrain(zeta(p.offset + i, s));
      } else {
        for (Index c = 0; c < t.count; ++c)
          t.forward(at(zeta, p.offset + c * t.free_each, s), at(value, p.row + c * t.size_each, s));
      }
    }
  }
  for (const auto& n : nodes_) n->forward(value);
}

void Model::unconstrain(const Eigen::Ref<const Vector>& theta, Eigen::Ref<Vector> zeta) const {
  Index first = 0;  // the parameter's first value in theta
  for (const auto& p : params_) {
    const Transform& t = p.transform;
    if (t.elementwise()) {
      for (Index i = 0; i < p.size; ++i) zeta[p.offset + i] = t.unconstrain(theta[first + i]);
    } else {
      for (Index c = 0; c < t.count; ++c)
        t.inverse(theta.data() + first + c * t.size_each, zeta.data() + p.offset + c * t.free_each);
    }
    first += p.size;
  }
}

void Model::check_workspace(const ModelWorkspace& ws, Index draws, int threads) const {
  if (ws.draws != draws || ws.threads < threads || ws.structure != structure_)
    throw std::logic_error("Model: the workspace was not prepared for " + std::to_string(draws) + " draws and " +
                           std::to_string(threads) + " threads on this model");
}

// The nodes' forward pass, the kernels, and the nodes' backward pass, on ws.theta.
void Model::evaluate_factors(ModelWorkspace& ws, Eigen::Ref<Vector> lp, int threads) const {
  for (const auto& n : nodes_) n->forward(ws.theta);
  ws.grad_theta.setZero();
  Batch batch{ws.theta.data(), ws.grad_theta.data(), lp.data(), ws.theta.rows(), ws.draws, usable_threads(threads)};
  for (size_t f = 0; f < factors_.size(); ++f) {
    batch.scratch = ws.scratch.data() + ws.factor_scratch[f];
    const bool minibatch = ws.rows && factors_[f].impl->data_rows() > 0;
    batch.rows = minibatch ? ws.rows : nullptr;
    batch.row_count = minibatch ? ws.subsample : 0;
    batch.row_weight = minibatch ? ws.row_weight : 1.0;
    factors_[f].impl->evaluate(batch);
  }
  for (auto n = nodes_.rbegin(); n != nodes_.rend(); ++n) (*n)->backward(ws.theta, ws.grad_theta);
}

void Model::log_density(const Eigen::Ref<const Matrix>& zeta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                        Eigen::Ref<Matrix> grad_zeta, int threads) const {
  const Index draws = zeta.cols();
  check_workspace(ws, draws, threads);
  lp.setZero();
  if (draws == 0) return;
  // Forward: constrain, collecting log-Jacobians. The backward pass recomputes each transform's
  // derivatives rather than storing them: that is cheaper than a second D x S buffer.
  for (const auto& p : params_) {
    const Transform& t = p.transform;
    if (t.kind == TransformKind::Identity) {
      ws.theta.middleRows(p.row, p.size) = zeta.middleRows(p.offset, p.size);
      continue;
    }
    for (Index s = 0; s < draws; ++s) {
      if (t.elementwise()) {
        for (Index i = 0; i < p.size; ++i) {
          const Transform::Jet jet = t.jet(zeta(p.offset + i, s));
          ws.theta(p.row + i, s) = jet.value;
          lp[s] += jet.log_jacobian;
        }
      } else {
        for (Index c = 0; c < t.count; ++c)
          lp[s] += t.forward(at(zeta, p.offset + c * t.free_each, s), at(ws.theta, p.row + c * t.size_each, s));
      }
    }
  }
  evaluate_factors(ws, lp, threads);
  // Backward through the transforms: d/d zeta = d/d theta * d theta/d zeta + d log|J| / d zeta.
  // (The parameters' rows of ws.theta still hold their values: nodes and kernels write elsewhere.)
  for (const auto& p : params_) {
    const Transform& t = p.transform;
    if (t.kind == TransformKind::Identity) {
      grad_zeta.middleRows(p.offset, p.size) = ws.grad_theta.middleRows(p.row, p.size);
      continue;
    }
    for (Index s = 0; s < draws; ++s) {
      if (t.elementwise()) {
        for (Index i = 0; i < p.size; ++i) {
          const Transform::Jet jet = t.jet(zeta(p.offset + i, s));
          grad_zeta(p.offset + i, s) = ws.grad_theta(p.row + i, s) * jet.dvalue + jet.dlog_jacobian;
        }
      } else {
        for (Index c = 0; c < t.count; ++c) {
          const Index z0 = p.offset + c * t.free_each, x0 = p.row + c * t.size_each;
          t.backward(at(zeta, z0, s), at(ws.theta, x0, s), at(ws.grad_theta, x0, s), at(grad_zeta, z0, s));
        }
      }
    }
  }
}

void Model::log_density_constrained(const Eigen::Ref<const Matrix>& theta, ModelWorkspace& ws, Eigen::Ref<Vector> lp,
                                    Eigen::Ref<Matrix> grad_theta, int threads) const {
  const Index draws = theta.cols();
  check_workspace(ws, draws, threads);
  lp.setZero();
  if (draws == 0) return;
  Index first = 0;  // the parameters' values, stacked
  for (const auto& p : params_) {
    ws.theta.middleRows(p.row, p.size) = theta.middleRows(first, p.size);
    first += p.size;
  }
  evaluate_factors(ws, lp, threads);
  first = 0;
  for (const auto& p : params_) {
    grad_theta.middleRows(first, p.size) = ws.grad_theta.middleRows(p.row, p.size);
    first += p.size;
  }
}

}  // namespace fastvi
