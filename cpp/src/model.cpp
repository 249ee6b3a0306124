#include "fastvi/model.hpp"

#include <stdexcept>

#include "fastvi/broadcast.hpp"
#include "fastvi/parallel.hpp"

namespace fastvi {

namespace {

// Kernel scratch regions start on a 64-byte boundary relative to the (Eigen-aligned) start of the
// workspace's scratch, so that each kernel sees the same alignment in every workspace.
constexpr Index kScratchAlign = 8;  // doubles
Index align_up(Index n) { return (n + kScratchAlign - 1) / kScratchAlign * kScratchAlign; }

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
  const auto lock = change_lock("parameter '" + name + "'");
  for (const auto& p : params_)
    if (p.name == name) throw std::invalid_argument("parameter '" + name + "' is already declared");
  ParamBlock block;
  block.name = name;
  block.shape = shape;
  for (Index d : shape)
    if (d < 1) throw std::invalid_argument("parameter '" + name + "': every dimension of shape must be >= 1");
  block.size = shape_size(shape, "parameter '" + name + "'");
  const Index new_dim = grown(dim_, block.size, "parameter '" + name + "'");
  const Index new_rows = grown(rows_, block.size, "parameter '" + name + "'");
  try {
    block.transform = Transform::from_bounds(lower, upper);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("parameter '" + name + "': " + e.what());
  }
  block.offset = dim_;
  block.row = rows_;
  dim_ = new_dim;
  rows_ = new_rows;
  params_.push_back(block);
  blocks_.push_back({name, shape, block.row, block.size, lower, upper, true});
  return Index(blocks_.size()) - 1;
}

Index Model::add_node(std::unique_ptr<Node> node, const std::string& name, const std::vector<Index>& shape,
                      double lower, double upper) {
  const auto lock = change_lock(name);
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

void Model::prepare(ModelWorkspace& ws, Index draws, int threads) const {
  threads = std::max(threads, 1);
  if (ws.draws == draws && ws.threads >= threads && ws.structure == structure_ &&
      ws.factor_scratch.size() == factors_.size() + 1)
    return;
  ws.theta.resize(rows(), draws);
  ws.grad_theta.resize(rows(), draws);
  ws.factor_scratch.assign(factors_.size() + 1, 0);
  Index total = 0;
  for (size_t f = 0; f < factors_.size(); ++f) {
    ws.factor_scratch[f] = total;
    total += align_up(factors_[f].impl->scratch_size(draws, threads));
  }
  ws.factor_scratch.back() = total;
  ws.scratch.setZero(total);
  ws.draws = draws;
  ws.threads = threads;
  ws.structure = structure_;
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
  evaluate_factors(ws, lp, threads);
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
  check_workspace(ws, draws, threads);
  lp.setZero();
  if (draws == 0) return;
  for (const auto& p : params_) ws.theta.middleRows(p.row, p.size) = theta.middleRows(p.offset, p.size);
  evaluate_factors(ws, lp, threads);
  for (const auto& p : params_) grad_theta.middleRows(p.offset, p.size) = ws.grad_theta.middleRows(p.row, p.size);
}

}  // namespace fastvi
