// What a kernel reads: a bound input (data or parameter) and the batch of draws it lives in.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "fastvi/types.hpp"

namespace fastvi {

// Constrained values and log-density gradients for S draws. Row r of `value` is one scalar of
// the model (parameter elements first); column s is draw s. Both matrices are column-major with
// leading dimension `ld`. Kernels add to `lp` and to `grad`; they never overwrite.
struct Batch {
  const double* value = nullptr;
  double* grad = nullptr;
  double* lp = nullptr;
  Index ld = 0;
  Index draws = 0;
  int threads = 1;  // upper bound on OpenMP threads a kernel may use
  // The caller's scratch for this kernel: Kernel::scratch_size(draws, threads) doubles, aligned
  // like an Eigen heap allocation. Owned by the evaluation (one per fit or log_density call), so
  // that one kernel object can serve several threads at once.
  double* scratch = nullptr;
  // A minibatch, for row-wise kernels only (Kernel::data_rows): row_count row numbers (in any
  // order; a row may repeat), whose terms count row_weight times each. Null: every row, once.
  const Index* rows = nullptr;
  Index row_count = 0;
  double row_weight = 1.0;
};

// One input of a bound factor: either data (a fixed array) or a slice of the model's rows.
//
// Element-wise kernels see every operand broadcast (numpy rules) to the factor's shape: element n
// of the broadcast result reads element `element(n)` of the operand's own values.
struct Operand {
  std::string name;          // the kernel's name for this input, e.g. "scale"
  std::string source;        // what the user passed, for messages: a parameter name or "data"
  std::vector<Index> shape;  // the operand's own shape (before broadcasting)
  bool is_param = false;
  Vector data;  // data values, row-major (numpy order); empty for parameters
  // Data read where it lies instead of from a float64 copy in `data`: `view` points at size()
  // C-contiguous values, float when view_is_float32 (else double), kept alive by view_owner (the
  // caller's array: a numpy array or numpy.memmap). Kernels see a view only for inputs declared
  // InputInfo::in_place (a GLM's design matrix); Model::bind_operands widens any other into `data`.
  // A float32 design matrix thus costs half the memory and bandwidth of a float64 one, and a
  // memory-mapped one is never loaded whole.
  const void* view = nullptr;
  bool view_is_float32 = false;
  std::shared_ptr<const void> view_owner;
  Index row = 0;         // first row of a parameter operand in Batch::value
  double lower = -kInf;  // every value the operand can take lies in [lower, upper]
  double upper = kInf;

  // Broadcasting, set when the factor is bound. index_map empty: element n reads n * stride.
  std::vector<Index> index_map;
  Index stride = 1;

  Index size() const {
    Index n = 1;
    for (Index d : shape) n *= d;
    return n;
  }
  bool has_view() const { return view != nullptr; }
  // Element i (row-major) of a data operand, from its view or its copy.
  double data_value(Index i) const {
    if (!view) return data[i];
    return view_is_float32 ? double(static_cast<const float*>(view)[i]) : static_cast<const double*>(view)[i];
  }
  // Copies a view into `data` as float64 and drops it (for kernels that read `data`).
  void widen_view() {
    if (!view) return;
    data.resize(size());
    for (Index i = 0; i < data.size(); ++i) data[i] = data_value(i);
    view = nullptr;
    view_owner.reset();
  }

  Index element(Index n) const { return index_map.empty() ? n * stride : index_map[size_t(n)]; }

  // Value of broadcast element n in draw s.
  double value(const Batch& b, Index n, Index s) const {
    const Index e = element(n);
    return is_param ? b.value[s * b.ld + row + e] : data[e];
  }
  // Adds g to d log p / d(element n, draw s). Only call for parameter operands.
  void add_grad(const Batch& b, Index n, Index s, double g) const { b.grad[s * b.ld + row + element(n)] += g; }

  // The operand is one number for every element (a scalar constant or scalar parameter).
  bool is_scalar() const { return size() == 1; }

  // Whole-draw access, for code that works on a draw at a time with Eigen arrays (vectorised).
  // An operand is contiguous when broadcast element n is its own element n (no broadcasting):
  // then draw s of a parameter is the run b.value[s * b.ld + row + n], n < size(), and data is
  // `data` itself. A scalar operand is one number per draw. Other operands (broadcast along some
  // axes, or a scalar that is not) go element by element through value() and add_grad().
  bool contiguous() const { return index_map.empty() && stride == 1; }
  bool whole_draw() const { return contiguous() || is_scalar(); }

  // Draw s of a contiguous operand (data: the same for every draw).
  Eigen::Map<const Eigen::ArrayXd> column(const Batch& b, Index s) const {
    return {is_param ? b.value + s * b.ld + row : data.data(), size()};
  }
  // The gradient of draw s of a contiguous parameter operand.
  Eigen::Map<Eigen::ArrayXd> grad_column(const Batch& b, Index s) const { return {b.grad + s * b.ld + row, size()}; }
  // Draw s of a scalar operand, and (for a parameter) its gradient.
  double scalar(const Batch& b, Index s) const { return is_param ? b.value[s * b.ld + row] : data[0]; }
  double& grad_scalar(const Batch& b, Index s) const { return b.grad[s * b.ld + row]; }
};

// Fewest broadcast elements for which code takes the whole-draw path. Below it, setting up a few
// Eigen expressions per draw costs what their vectorised loops save (with 8, the eight-schools
// model ran 5-8 % slower per step than element by element; from 16 elements on, it is faster).
inline constexpr Index kMinWholeDraw = 16;

// Calls f(x) with draw s of a whole_draw() operand as an Eigen array expression of n elements:
// its column if contiguous, a constant if scalar. One element-wise formula then serves both
// layouts, each compiled to vectorised code.
template <class F>
void with_draw(const Operand& op, const Batch& b, Index s, Index n, F&& f) {
  if (op.is_scalar())
    f(Eigen::ArrayXd::Constant(n, op.scalar(b, s)));
  else
    f(op.column(b, s));
}

// Adds d (the partials of draw s's broadcast elements, an Eigen array expression) to the
// gradient of a whole_draw() parameter operand: element by element, or their sum for a scalar.
template <class Derived>
void add_grad_draw(const Operand& op, const Batch& b, Index s, const Eigen::ArrayBase<Derived>& d) {
  if (op.is_scalar())
    op.grad_scalar(b, s) += d.sum();
  else
    op.grad_column(b, s) += d;
}

}  // namespace fastvi
