// fv.logp for any element-wise kernel: a node whose element n is the kernel's log density at
// broadcast element n of its inputs.
//
// Kernels only ever add a sum over their elements to each draw's lp, so the node holds one kernel
// per element, each bound to that element alone (scalar operands reading the element's row or
// datum). Forward calls kernel n to get element n's lp for every draw; backward calls it again on
// a private gradient buffer and adds g_n(s) times its partials to the real gradient, where g_n(s)
// is d lp / d(element n) from the nodes and factors downstream. That costs one kernel call per
// element per pass: fine for the mixtures and custom terms fv.logp is for, and the price of
// working for every kernel, including a user's. (The closed-form built-ins have faster
// expression forms in python/fastvi/_logp.py.)
//
// The buffers a kernel call writes into (lp for S draws, a rows x S gradient, the kernel's scratch)
// are thread-local and grow only: a fit allocates on its first step and never again, and several
// threads evaluating one model each get their own.
#include <algorithm>
#include <stdexcept>

#include "fastvi/expression.hpp"

namespace fastvi {
namespace {

struct Buffers {
  Vector lp, grad, scratch;
};

Buffers& buffers(Index draws, Index rows, Index scratch) {
  thread_local Buffers b;
  if (b.lp.size() < draws) b.lp.resize(draws);
  if (b.grad.size() < rows * draws) b.grad.resize(rows * draws);
  if (b.scratch.size() < std::max<Index>(scratch, 1)) b.scratch.resize(std::max<Index>(scratch, 1));
  return b;
}

class KernelLogp final : public Node {
 public:
  KernelLogp(const KernelInfo& info, std::vector<Operand> operands, Index n) {
    size = n;
    kernels_.reserve(size_t(n));
    rows_.resize(size_t(n));
    for (Index e = 0; e < n; ++e) {
      std::vector<Operand> one;
      one.reserve(operands.size());
      for (const Operand& op : operands) {
        Operand o;
        o.name = op.name;
        o.source = op.source;
        o.is_param = op.is_param;
        o.lower = op.lower;
        o.upper = op.upper;
        if (op.is_param) {
          o.row = op.row + op.element(e);
          rows_[size_t(e)].push_back(o.row);
        } else {
          o.data = Vector::Constant(1, op.data[op.element(e)]);
        }
        one.push_back(std::move(o));
      }
      auto& r = rows_[size_t(e)];
      std::sort(r.begin(), r.end());
      r.erase(std::unique(r.begin(), r.end()), r.end());
      kernels_.push_back(info.factory(std::move(one), 1));
    }
  }

  void forward(Matrix& value) const override {
    const Index draws = value.cols(), ld = value.rows();
    Buffers& b = buffers(draws, ld, scratch_size(draws));
    for (Index e = 0; e < size; ++e) {
      b.lp.head(draws).setZero();
      kernels_[size_t(e)]->evaluate(batch(value, b, draws));
      for (Index s = 0; s < draws; ++s) value(row + e, s) = b.lp[s];
    }
  }

  void backward(const Matrix& value, Matrix& grad) const override {
    const Index draws = value.cols(), ld = value.rows();
    Buffers& b = buffers(draws, ld, scratch_size(draws));
    for (Index e = 0; e < size; ++e) {
      const auto& rows = rows_[size_t(e)];
      if (rows.empty()) continue;  // a constant: nothing to differentiate
      for (Index r : rows)
        for (Index s = 0; s < draws; ++s) b.grad[s * ld + r] = 0.0;
      kernels_[size_t(e)]->evaluate(batch(value, b, draws));
      for (Index r : rows)
        for (Index s = 0; s < draws; ++s) grad(r, s) += grad(row + e, s) * b.grad[s * ld + r];
    }
  }

 private:
  Index scratch_size(Index draws) const {
    Index most = 0;
    for (const auto& k : kernels_) most = std::max(most, k->scratch_size(draws, 1));
    return most;
  }

  static Batch batch(const Matrix& value, Buffers& b, Index draws) {
    Batch batch;
    batch.value = value.data();
    batch.grad = b.grad.data();
    batch.lp = b.lp.data();
    batch.ld = value.rows();
    batch.draws = draws;
    batch.threads = 1;
    batch.scratch = b.scratch.data();
    return batch;
  }

  std::vector<std::unique_ptr<Kernel>> kernels_;
  std::vector<std::vector<Index>> rows_;  // the distinct rows each element's kernel reads
};

}  // namespace

std::unique_ptr<Node> make_kernel_logp(const KernelInfo& info, std::vector<Operand> operands, Index size) {
  return std::make_unique<KernelLogp>(info, std::move(operands), size);
}

}  // namespace fastvi
