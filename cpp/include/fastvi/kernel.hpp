// The kernel contract: a registered log-density term that works on a whole batch of draws.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fastvi/operand.hpp"

namespace fastvi {

// Where the values of an input must lie. Checked for data when a factor is bound, and against a
// parameter's constraint (e.g. a `scale` parameter must be declared with lower >= 0).
enum class Support { Real, Positive, NonNegative, UnitInterval, Binary, Count };

// The one table of supports (registry.cpp): each one's key, as Python spells it ("positive"), and
// its description in error messages ("> 0"). The bindings and the Python package read it from here.
struct SupportInfo {
  Support support;
  const char* key;
  const char* description;
};
const std::vector<SupportInfo>& supports();
const char* support_name(Support s);  // the description
const char* support_key(Support s);
Support support_from_key(const std::string& key);  // throws std::invalid_argument listing the keys
bool in_support(Support s, double x);

struct InputInfo {
  std::string name;
  Support support = Support::Real;
  bool data_only = false;               // e.g. a GLM's design matrix or a count outcome
  std::optional<double> default_value;  // used when the input is omitted
  std::string doc;
  // Other names accepted for this input: earlier spellings kept working after a rename (the
  // GLMs' `sigma`, now `scale` as in every other kernel). A factor stores the input by `name`.
  std::vector<std::string> aliases = {};
  // The kernel reads this data input in place, float64 or float32 (Operand::view), instead of
  // from a float64 copy: for large data such as a design matrix. Checked like any data input.
  bool in_place = false;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Doubles of scratch evaluate() needs for `draws` draws on at most `threads` threads. The caller
  // allocates them (once per fit, or per log_density call) and passes them as Batch::scratch.
  virtual Index scratch_size(Index draws, int threads) const {
    (void)draws;
    (void)threads;
    return 0;
  }
  // Adds each draw's log density to batch.lp[s] and its partials to batch.grad for every parameter
  // operand. Must not allocate. const, and must not keep state between calls: one kernel object
  // serves every fit and log_density call on its model, and several threads may call it at once,
  // each with its own Batch (and scratch).
  //
  // A kernel that cannot go on (a Python kernel whose function raised, say) may throw: the
  // exception leaves Model::log_density, ElboEstimator::estimate and run_fit as it is, and the model
  // stays usable. (So the core must not call evaluate inside an OpenMP region; a kernel that runs
  // one itself must not let an exception escape it.) A draw outside the support is not a failure:
  // add -inf or NaN to its lp and the fit skips that step.
  virtual void evaluate(const Batch& batch) const = 0;

  // Minibatches. A row-wise kernel (one term per row of its data, like the GLMs' rows of X and y)
  // returns its number of rows N > 0 from data_rows(); a minibatch fit then passes it
  // Batch::rows, and it adds row_weight times those rows' terms (plus, exactly, any terms that do
  // not depend on the parameters): an unbiased estimate of its log density for row_weight =
  // N / row_count. subsample_scratch_size is the scratch that takes, for `rows` < N rows (the
  // caller gives the larger of it and scratch_size). Other kernels are always evaluated whole.
  virtual Index data_rows() const { return 0; }
  virtual Index subsample_scratch_size(Index draws, int threads, Index rows) const {
    (void)draws;
    (void)threads;
    (void)rows;
    return 0;
  }
  // Makes the kernel row-wise with n rows (Model.add's rows=, called once after the factory, before
  // any evaluation): returns false if it cannot be, as by default. An element-wise kernel
  // (ElementwiseKernel) takes row r to be the elements [r * size / n, (r + 1) * size / n), the
  // leading axis of its broadcast shape. Unlike the GLMs, it adds row_weight times *every* term of
  // the chosen rows' elements, data-only constants included: an unbiased estimate of the log
  // density too, only not exact in its constant part (which does not change the fit).
  virtual bool set_data_rows(Index n) {
    (void)n;
    return false;
  }
};

// Builds a kernel from its operands, ordered as KernelInfo::inputs (variate first). For an
// element-wise kernel the operands are already broadcast to `size` elements.
using KernelFactory = std::function<std::unique_ptr<Kernel>(std::vector<Operand> operands, Index size)>;

struct KernelInfo {
  std::string name;
  std::string doc;
  std::vector<InputInfo> inputs;  // inputs[0] is the variate (the first argument of Model.add)
  bool elementwise = true;        // operands broadcast together (numpy rules)
  KernelFactory factory;
};

}  // namespace fastvi
