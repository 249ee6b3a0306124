// The element-wise kernel driver: a distribution writes its log density and partials once, and
// ElementwiseKernel<Dist> turns that into a Kernel (kernel.hpp) for every layout of its inputs.
//
// A distribution is a struct with its registry entry and one function (a complete example:
// cpp/src/kernels/normal.cpp; one in an extension module: examples/custom_kernel/src/laplace.cpp):
//
//   struct Normal {
//     static constexpr const char* name = "normal";
//     static constexpr const char* doc = "Normal(y | loc, scale)";
//     static constexpr Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
//                                        {"loc", Support::Real, false, 0.0, "mean"},
//                                        {"scale", Support::Positive, false, 1.0, "standard deviation"}};
//     enum { kY, kLoc, kScale };
//     using Derived = Derive<Of<kScale, Inverse>>;  // optional: functions of one input, see below
//
//     template <class Out, class Y, class Loc, class Scale, class Inv>
//     static void log_density(Out& out, const Y& y, const Loc& loc, const Scale&, const Inv& inv) {
//       const auto z = out.keep((y - loc) * inv);
//       out.lp(-0.5 * square(z));                           // a term in every input
//       if (auto lp = out.term(kScale)) lp += log(inv);     // a term in scale only
//       if (auto lp = out.term()) lp -= math::kHalfLog2Pi;  // a constant
//       out.grad(kY, -z * inv);
//       out.grad(kLoc, z * inv);
//       out.grad(kScale, (square(z) - 1.0) * inv);
//     }
//   };
//
// log_density receives the inputs in table order, then the Derived values, each as a double or
// as an Eigen array of a run of elements, and is compiled for every mix of the two: write it with
// the operators and the functions of namespace fastvi::elementwise (elementwise_math.hpp: log, exp, log1p,
// log1p_exp, inv_logit, log_gamma, digamma, ...), which accept both. What `out` offers:
//   out.lp(v)        adds v (a value per element) to the log density: a term that depends on every
//                    input, or at least on every one that can be a parameter.
//   out.term(i...)   for a term that depends on inputs i... only (none: a constant). It returns a
//                    sink that is true when the term belongs to this evaluation: `lp += v` adds v.
//                    Terms of data only are summed once when the factor is built and added to
//                    every draw; the others are computed per draw. (Stan's include_summand.)
//   out.grad(i, g)   adds g, d log p / d input i per element, if input i is a parameter (nothing
//                    otherwise). g is computed either way on the element path, so guard a costly
//                    partial with `if (out.param(i))`.
//   out.param(i)     whether input i is a parameter in this evaluation.
//   out.keep(e)      evaluates e once and returns it: a double, or an array in scratch (at most
//                    kMaxKept per call), for an intermediate used more than once.
// Derived: values of one input that the maths needs, e.g. Of<kY, Log> for log(y). For a data
// input they are tabulated when the factor is built, so that a data y costs no log per draw; for
// a parameter they are computed per draw. Functors: Log, Log1m, Inverse, or any struct with a
// templated operator() over double and arrays. The gating by term() and param() uses input
// indices, so spell them with an enum.
//
// Optional: `static void check(const std::vector<Operand>& ops, Index size)`, called when a factor
// is built, for conditions that couple inputs (binomial's y <= trials); throw
// std::invalid_argument with a message naming the inputs.
//
// What the driver does with it (all decided when the factor is built):
//  - inputs that are data are fixed: broadcast data are expanded to the factor's shape once, the
//    Derived values of data are tabulated, and the data-only terms are summed (a pass with every
//    parameter NaN, so a term gated by too few inputs shows up as NaN);
//  - with at least kMinWholeDraw elements (operand.hpp), each draw is cut into runs of up to
//    kChunk elements and log_density is called once per run with Eigen arrays, which the compiler
//    vectorises: a scalar input (data or parameter) is a double, a parameter broadcast along some
//    axis is gathered into scratch and its partials scattered back; with fewer elements it is
//    called per element with doubles;
//  - partials and lp are added, never overwritten; evaluate allocates nothing, keeps no state,
//    and runs on the calling thread only;
//  - a factor made row-wise along its leading axis (Model.add's rows=, set_data_rows) evaluates a
//    minibatch (Batch::rows) on a path of its own: elementwise_rows.hpp.
//
// Register the distribution with register_elementwise<Dist>(registry) (built-in kernels) or, from
// an extension module, fastvi::extension::register_kernel(elementwise_kernel_info<Dist>()).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastvi/elementwise_math.hpp"
#include "fastvi/kernel.hpp"
#include "fastvi/math.hpp"
#include "fastvi/registry.hpp"

// The loops over draws and elements are flattened (everything they call inlined) and the per-run
// helpers forced inline: called out of line, the helpers' Eigen loops reloaded pointers that had
// escaped through the call (normal with a data y and scalar parameters ran 15 % slower), and an
// out-of-line log-sum ran 50 % slower. (#undef-ed at the end of this file.) Not under
// AddressSanitizer (tools/sanitize.sh): flattening the instrumented loops made single kernel files
// take over 45 minutes to compile, and the checks see the same code called out of line.
#if defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define FASTVI_EW_INLINE inline __attribute__((always_inline))
#define FASTVI_EW_FLATTEN __attribute__((flatten))
#else
#define FASTVI_EW_INLINE inline
#define FASTVI_EW_FLATTEN
#endif

namespace fastvi {
namespace elementwise {

// One row of a distribution's input table: InputInfo's fields, as literal types so that the
// table can be a constexpr array (its length is the distribution's number of inputs).
struct Input {
  const char* name;
  Support support;
  bool data_only;
  std::optional<double> default_value;
  const char* doc;
};

// A run of elements of one input (or of a kept intermediate) in one draw.
using Column = Eigen::Map<const Eigen::ArrayXd>;

// ---- Derived values ------------------------------------------------------------------------------

// Derive<Of<input, Functor>...>: see the top of this file.
template <int I, class F>
struct Of {
  static constexpr int input = I;
  using Fn = F;
};
template <class... O>
struct Derive {
  using list = std::tuple<O...>;
};

struct Log {
  template <class T>
  auto operator()(const T& x) const {
    return log(x);
  }
};
struct Log1m {
  template <class T>
  auto operator()(const T& x) const {
    return log1m(x);
  }
};
struct Inverse {
  double operator()(double x) const { return 1.0 / x; }
  template <class T, if_array<T> = 0>
  auto operator()(const T& x) const {
    return x.inverse();
  }
};

// Broadcast element n of a data operand (for check()).
inline double data_at(const Operand& op, Index n) { return op.data[op.element(n)]; }

// Most elements per run of the vectorised path. A draw of up to kChunk elements is one run, as in
// the hand-written kernels, which took whole draws: each run costs its loops' set-up and exits,
// and with runs of 256 normal with a 1,000-element parameter and scalar data took 15 % longer
// than they (runs of 512: 12 %). A longer draw is cut into equal runs (multiples of 8 but the
// last) of at most kChunk, so that a run's columns stay in cache.
inline constexpr Index kChunk = 1024;
// Most keep() results one log_density call may hold.
inline constexpr int kMaxKept = 6;

namespace detail {

// sum over a run of len elements of v, a value per element (a double: the same for every one).
template <class V>
FASTVI_EW_INLINE double total(const V& v, Index len) {
  if constexpr (is_array_v<V>)
    return v.sum();
  else
    return double(len) * double(v);
}

template <class... I>
constexpr unsigned mask(I... inputs) {
  return (0u | ... | (1u << unsigned(inputs)));
}

// What out.term() returns: adds to the log density if the term belongs to this evaluation.
class Sum {
 public:
  Sum(double* acc, Index len) : acc_(acc), len_(len) {}
  explicit operator bool() const { return acc_ != nullptr; }
  template <class V>
  Sum& operator+=(const V& v) {
    *acc_ += total(v, len_);
    return *this;
  }
  template <class V>
  Sum& operator-=(const V& v) {
    *acc_ -= total(v, len_);
    return *this;
  }

 private:
  double* acc_;
  Index len_;
};

// The pass that sums the data-only terms, element by element, when the factor is built.
class ConstantOut {
 public:
  ConstantOut(unsigned params, double* lp) : params_(params), lp_(lp) {}
  bool param(int) const { return false; }
  template <class... I>
  Sum term(I... inputs) const {
    return Sum((params_ & mask(inputs...)) == 0 ? lp_ : nullptr, 1);
  }
  void lp(double v) const {
    if (params_ == 0) *lp_ += v;
  }
  void grad(int, double) const {}
  double keep(double v) const { return v; }

 private:
  unsigned params_;  // bit i: input i is a parameter
  double* lp_;
};

// One input's elements in one draw, for the element-by-element path: values (and, for a
// parameter, partials) at value[map[n]], or value[n * stride] without a map. next() moves a
// parameter's pointers to the next draw.
struct Access {
  const double* value;
  double* grad;  // null for data
  const Index* map;
  Index stride;
  Index step;  // the batch's leading dimension for a parameter, 0 for data
  Index index(Index n) const { return map ? map[n] : n * stride; }
  void next() {
    value += step;
    grad += step;  // null + 0 for data
  }
};

// Access to an operand, but for a parameter's rows (value and grad hold its row offset).
inline Access access(const Operand& op) {
  const bool mapped = !op.index_map.empty();
  return {op.is_param ? nullptr : op.data.data(), nullptr, mapped ? op.index_map.data() : nullptr,
          mapped ? 0 : op.stride, op.row};
}
// Access to draw 0 of a batch, from access(op).
template <bool Param>
Access access(Access a, const Batch& b) {
  if constexpr (Param) {
    a.value = b.value + a.step;
    a.grad = b.grad + a.step;
    a.step = b.ld;
  } else {
    a.step = 0;
  }
  return a;
}

// Element n of draw s, with doubles. Params: bit i set if input i is a parameter (a compile-time
// constant here, so that the element loop keeps only the terms and partials it needs).
template <unsigned Params>
class ElementOut {
 public:
  ElementOut(const Access* in, Index n, double* lp) : in_(in), n_(n), lp_(lp) {}
  static constexpr bool param(int i) { return (Params >> i) & 1u; }
  template <class... I>
  Sum term(I... inputs) const {
    return Sum((Params & mask(inputs...)) != 0 ? lp_ : nullptr, 1);
  }
  void lp(double v) const { *lp_ += v; }
  void grad(int i, double g) const {
    if (param(i)) in_[i].grad[in_[i].index(n_)] += g;
  }
  double keep(double v) const { return v; }

 private:
  const Access* in_;
  Index n_;
  double* lp_;
};

// Elements [n0, n0 + len) of draw s, with Eigen arrays (doubles for scalar inputs).
class ChunkOut {
 public:
  ChunkOut(const Batch& b, const Operand* ops, unsigned params, Index n0, Index len, Index s, double* lp, double* kept,
           double* buffer, Index stride)
      : b_(b),
        ops_(ops),
        params_(params),
        n0_(n0),
        len_(len),
        s_(s),
        lp_(lp),
        kept_(kept),
        buffer_(buffer),
        stride_(stride) {}
  bool param(int i) const { return (params_ >> i) & 1u; }
  template <class... I>
  Sum term(I... inputs) const {
    return Sum((params_ & mask(inputs...)) != 0 ? lp_ : nullptr, len_);
  }
  template <class V>
  FASTVI_EW_INLINE void lp(const V& v) const {
    *lp_ += total(v, len_);
  }
  template <class G>
  FASTVI_EW_INLINE void grad(int i, const G& g) const {
    if (!param(i)) return;
    const Operand& op = ops_[i];
    double* rows = b_.grad + s_ * b_.ld + op.row;
    if (op.is_scalar()) {
      rows[0] += total(g, len_);
    } else if (op.index_map.empty()) {
      Eigen::Map<Eigen::ArrayXd>(rows + n0_, len_) += g;
    } else {
      // Broadcast along some axis: several elements may share one gradient entry.
      const Index* element = op.index_map.data() + n0_;
      if constexpr (is_array_v<G>) {
        Eigen::Map<Eigen::ArrayXd>(buffer_, len_) = g;
        for (Index k = 0; k < len_; ++k) rows[element[k]] += buffer_[k];
      } else {
        for (Index k = 0; k < len_; ++k) rows[element[k]] += g;
      }
    }
  }
  template <class E>
  FASTVI_EW_INLINE auto keep(const E& e) {
    if constexpr (is_array_v<E>) {
      if (used_ == kMaxKept) throw std::logic_error("element-wise kernel: more than kMaxKept keep() results");
      double* col = kept_ + Index(used_++) * stride_;
      Eigen::Map<Eigen::ArrayXd>(col, len_) = e;
      return Column(col, len_);
    } else {
      return double(e);
    }
  }

 private:
  const Batch& b_;
  const Operand* ops_;
  unsigned params_;
  Index n0_, len_, s_;
  double* lp_;
  double* kept_;
  double* buffer_;
  Index stride_;
  int used_ = 0;
};

template <class Dist, class = void>
struct derived_of {
  using type = std::tuple<>;
};
template <class Dist>
struct derived_of<Dist, std::void_t<typename Dist::Derived>> {
  using type = typename Dist::Derived::list;
};

template <class Dist, class = void>
struct has_check : std::false_type {};
template <class Dist>
struct has_check<Dist, std::void_t<decltype(Dist::check(std::declval<const std::vector<Operand>&>(), Index()))>>
    : std::true_type {};

}  // namespace detail
}  // namespace elementwise

template <class Dist, auto Run>
class ElementwiseKernelRun;

// The operands, their tables and the run functions of a distribution's kernel; evaluate() is in
// ElementwiseKernelRun<Dist, run function> (below), one final class per run function, so that the
// virtual call lands in the loop for the operands' layout with no second dispatch (for a scalar
// prior, normal's step took 20 % longer with it). create() picks the class from the operands.
template <class Dist>
class ElementwiseKernel : public Kernel {
  using Column = elementwise::Column;
  using DerivedList = typename elementwise::detail::derived_of<Dist>::type;
  static constexpr int K = int(std::size(Dist::inputs));
  static constexpr int J = int(std::tuple_size_v<DerivedList>);
  static_assert(K >= 1 && K <= 8, "an element-wise distribution has 1 to 8 inputs");
  static constexpr unsigned data_only_mask() {
    unsigned m = 0;
    for (int i = 0; i < K; ++i)
      if (Dist::inputs[i].data_only) m |= 1u << i;
    return m;
  }
  static constexpr unsigned kDataOnly = data_only_mask();
  template <size_t D>
  using DerivedAt = std::tuple_element_t<D, DerivedList>;
  template <size_t D>
  static constexpr int source = DerivedAt<D>::input;
  // The view of an input in a run: a double for a scalar operand, else a Column.
  template <class V>
  using ViewOf = std::conditional_t<std::is_same_v<V, double>, double, Column>;

 public:
  // The kernel for these operands (the layout's run function is fixed here: params and scalars
  // are known from the operands as bound).
  static std::unique_ptr<Kernel> create(std::vector<Operand> ops, Index size) {
    if (Index(ops.size()) != K) throw std::logic_error(std::string(Dist::name) + ": wrong number of operands");
    unsigned params = 0;
    for (int i = 0; i < K; ++i)
      if (ops[size_t(i)].is_param) params |= 1u << i;
    Make make = params == 0 ? &ElementwiseKernel::make<&ElementwiseKernel::run_constant>
                            : pick_elements(params, std::make_integer_sequence<unsigned, (1u << K)>());
    if (params != 0 && size >= kMinWholeDraw)
      if (const Make chunks = pick<>(ops)) make = chunks;
    if (!make) throw std::logic_error(std::string(Dist::name) + ": a parameter for a data-only input");
    return make(std::move(ops), size);
  }

 protected:
  ElementwiseKernel(std::vector<Operand> ops, Index size) : ops_(std::move(ops)), size_(size) {
    if (Index(ops_.size()) != K) throw std::logic_error(std::string(Dist::name) + ": wrong number of operands");
    if constexpr (elementwise::detail::has_check<Dist>::value) Dist::check(ops_, size_);
    for (int i = 0; i < K; ++i) {
      Operand& op = ops_[size_t(i)];
      if (op.is_param) {
        params_ |= 1u << i;
      } else if (!op.is_scalar() && !op.contiguous()) {
        // Broadcast data: expanded to the factor's shape once, so that every data operand is a
        // scalar or contiguous.
        Vector full(size_);
        for (Index n = 0; n < size_; ++n) full[n] = op.data[op.element(n)];
        op.data = std::move(full);
        op.shape = {size_};
        op.index_map.clear();
        op.stride = 1;
      }
    }
    tabulate(std::make_index_sequence<J>());
    sum_constant_terms(std::make_index_sequence<K>(), std::make_index_sequence<J>());
    for (int i = 0; i < K; ++i) access_[size_t(i)] = elementwise::detail::access(ops_[size_t(i)]);
    if (params_ != 0 && size_ >= kMinWholeDraw) {
      const Index runs = (size_ + elementwise::kChunk - 1) / elementwise::kChunk;
      chunk_ = runs == 1 ? size_ : ((size_ + runs - 1) / runs + 7) / 8 * 8;
      stride_ = (chunk_ + 7) / 8 * 8;
    }
  }

 public:
  // access_ points into ops_.
  ElementwiseKernel(const ElementwiseKernel&) = delete;
  ElementwiseKernel& operator=(const ElementwiseKernel&) = delete;

  // The vectorised path's columns: gathered inputs, derived values, kept intermediates, and a
  // buffer for partials to scatter.
  Index scratch_size(Index, int) const override {
    return stride_ > 0 ? Index(K + J + elementwise::kMaxKept + 1) * stride_ : 0;
  }

  // The operands as bound, broadcast data expanded (for a kernel that wraps this one and builds
  // another element-wise kernel on the same inputs).
  const std::vector<Operand>& operands() const { return ops_; }

  // Minibatches over the leading axis (Model.add's rows=; elementwise_rows.hpp).
  Index data_rows() const override { return rows_; }
  bool set_data_rows(Index n) override {
    if (n < 1 || size_ % n != 0) return false;
    rows_ = n;
    return true;
  }
  Index subsample_scratch_size(Index, int, Index rows) const override {
    return rows_ > 0 ? Index(K + J + elementwise::kMaxKept + 2) * rows_stride(rows) : 0;
  }

 private:
  template <class, auto>
  friend class ElementwiseKernelRun;

  // A minibatch (Batch::rows): the chosen rows' elements, gathered into runs (elementwise_rows.hpp).
  void run_rows(const Batch& b) const;
  template <size_t... I, size_t... D>
  void run_rows_impl(const Batch& b, std::index_sequence<I...>, std::index_sequence<D...>) const;
  // The scratch column stride of run_rows for minibatches of `rows` rows.
  Index rows_stride(Index rows) const {
    const Index run = std::min(std::max<Index>(rows, 1) * (size_ / rows_), elementwise::kChunk);
    return (run + 7) / 8 * 8;
  }
  using Make = std::unique_ptr<Kernel> (*)(std::vector<Operand>&&, Index);
  template <auto Run>
  static std::unique_ptr<Kernel> make(std::vector<Operand>&& ops, Index size) {
    return std::make_unique<ElementwiseKernelRun<Dist, Run>>(std::move(ops), size);
  }

  // f(value) of Derived D for each of its data source's own elements (empty for a parameter).
  template <size_t... D>
  void tabulate(std::index_sequence<D...>) {
    (tabulate_one<D>(), ...);
  }
  template <size_t D>
  void tabulate_one() {
    const Operand& op = ops_[source<D>];
    if (op.is_param) return;
    Vector& table = tables_[D];
    table.resize(op.data.size());
    for (Index i = 0; i < table.size(); ++i) table[i] = typename DerivedAt<D>::Fn{}(op.data[i]);
  }

  // Derived D of an element, given its source's value there and the index of that value among the
  // source's own elements.
  template <size_t D, bool Param>
  double derived_element(double source_value, Index index) const {
    if constexpr (Param)
      return typename DerivedAt<D>::Fn{}(source_value);
    else
      return tables_[D][index];
  }

  template <size_t... I, size_t... D>
  void sum_constant_terms(std::index_sequence<I...>, std::index_sequence<D...>) {
    double lp = 0.0;
    const elementwise::detail::ConstantOut out(params_, &lp);
    for (Index n = 0; n < size_; ++n) {
      const std::array<double, K> x{{(ops_[I].is_param ? kNaN : elementwise::data_at(ops_[I], n))...}};
      Dist::log_density(out, x[I]..., (ops_[source<D>].is_param ? kNaN : tables_[D][ops_[source<D>].element(n)])...);
    }
    const_lp_ = lp;
  }

  // No parameter: the log density is one number.
  void run_constant(const Batch& b) const {
    for (Index s = 0; s < b.draws; ++s) b.lp[s] += const_lp_;
  }

  // The element-by-element path, compiled for each set of parameter inputs (Params: bit i set if
  // input i is a parameter; none of the data-only inputs).
  template <unsigned Params>
  static constexpr Make element_fn() {
    if constexpr (Params == 0 || (Params & kDataOnly) != 0)
      return nullptr;
    else
      return &ElementwiseKernel::make<&ElementwiseKernel::run_elements<Params>>;
  }
  template <unsigned... P>
  static Make pick_elements(unsigned params, std::integer_sequence<unsigned, P...>) {
    constexpr Make table[] = {element_fn<P>()...};
    return table[params];
  }

  template <unsigned Params>
  void run_elements(const Batch& b) const {
    run_elements_impl<Params>(b, std::make_index_sequence<K>(), std::make_index_sequence<J>());
  }

  template <unsigned Params, size_t... I, size_t... D>
  FASTVI_EW_FLATTEN void run_elements_impl(const Batch& b, std::index_sequence<I...>, std::index_sequence<D...>) const {
    std::array<elementwise::detail::Access, K> in{
        {elementwise::detail::access<((Params >> I) & 1u) != 0>(access_[I], b)...}};
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const std::array<double, K> x{{in[I].value[in[I].index(n)]...}};
        const elementwise::detail::ElementOut<Params> out(in.data(), n, &lp);
        Dist::log_density(out, x[I]...,
                          derived_element<D, ((Params >> source<D>)&1u) != 0>(x[source<D>], in[source<D>].index(n))...);
      }
      b.lp[s] += lp;
      (in[I].next(), ...);
    }
  }

  // The instantiation of run_chunks for the operands' layouts: input i's view is a double if its
  // operand is a scalar, else a Column (2^K - 1 instantiations: with every operand a scalar there is
  // one element, and the element path runs: null here).
  template <class... V>
  static Make pick(const std::vector<Operand>& ops) {
    if constexpr (sizeof...(V) == K) {
      if constexpr ((std::is_same_v<V, double> && ...))
        return nullptr;
      else
        return &ElementwiseKernel::make<&ElementwiseKernel::run_chunks<V...>>;
    } else {
      if (ops[sizeof...(V)].is_scalar()) return pick<V..., double>(ops);
      return pick<V..., Column>(ops);
    }
  }

  template <class... V>
  void run_chunks(const Batch& b) const {
    run_chunks_impl<V...>(b, std::make_index_sequence<K>(), std::make_index_sequence<J>());
  }

  template <class... V, size_t... I, size_t... D>
  FASTVI_EW_FLATTEN void run_chunks_impl(const Batch& b, std::index_sequence<I...>, std::index_sequence<D...>) const {
    using Views = std::tuple<V...>;
    double* const kept = b.scratch + Index(K + J) * stride_;
    double* const buffer = kept + Index(elementwise::kMaxKept) * stride_;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n0 = 0; n0 < size_; n0 += chunk_) {
        const Index len = std::min(chunk_, size_ - n0);
        const Views x{input_view<V>(ops_[I], b, s, n0, len, b.scratch + Index(I) * stride_)...};
        elementwise::detail::ChunkOut out(b, ops_.data(), params_, n0, len, s, &lp, kept, buffer, stride_);
        Dist::log_density(out, std::get<I>(x)...,
                          derived_view<D>(std::get<source<D>>(x), n0, len, b.scratch + Index(K + D) * stride_)...);
      }
      b.lp[s] += lp;
    }
  }

  // Input values of a run: the number itself for a scalar operand; for a column, the run in place
  // (data, or a parameter's rows), or gathered into `col` for a parameter broadcast along an axis.
  template <class V>
  static V input_view(const Operand& op, const Batch& b, Index s, Index n0, Index len, double* col) {
    if constexpr (std::is_same_v<V, double>) {
      return op.scalar(b, s);
    } else {
      if (!op.is_param) return Column(op.data.data() + n0, len);
      const double* rows = b.value + s * b.ld + op.row;
      if (op.index_map.empty()) return Column(rows + n0, len);
      const Index* element = op.index_map.data() + n0;
      for (Index k = 0; k < len; ++k) col[k] = rows[element[k]];
      return Column(col, len);
    }
  }

  template <size_t D, class V>
  ViewOf<V> derived_view(const V& source_view, Index n0, Index len, double* col) const {
    const Operand& op = ops_[source<D>];
    if constexpr (std::is_same_v<V, double>) {
      return op.is_param ? double(typename DerivedAt<D>::Fn{}(source_view)) : tables_[D][0];
    } else {
      if (!op.is_param) return Column(tables_[D].data() + n0, len);
      Eigen::Map<Eigen::ArrayXd>(col, len) = typename DerivedAt<D>::Fn{}(source_view);
      return Column(col, len);
    }
  }

  std::vector<Operand> ops_;  // as KernelInfo::inputs; broadcast data expanded to size_
  Index size_;
  unsigned params_ = 0;                   // bit i: input i is a parameter
  std::array<Vector, size_t(J)> tables_;  // Derived values of a data source's elements
  double const_lp_ = 0.0;                 // the data-only terms, summed over the elements
  Index chunk_ = 0, stride_ = 0;          // run length, and the scratch column stride (a multiple of 8)
  std::array<elementwise::detail::Access, size_t(K)> access_;  // the operands, for run_elements
  Index rows_ = 0;                                             // rows of a row-wise factor (set_data_rows), else 0
};

// The kernel whose evaluate() runs Run (run_constant, run_elements<Params> or run_chunks<Views...>
// of ElementwiseKernel<Dist>), a compile-time constant: the call is direct and inlined.
template <class Dist, auto Run>
class ElementwiseKernelRun final : public ElementwiseKernel<Dist> {
 public:
  ElementwiseKernelRun(std::vector<Operand> ops, Index size) : ElementwiseKernel<Dist>(std::move(ops), size) {}
  // Not flattened itself (run_elements_impl and run_chunks_impl are): flattening this too left
  // Eigen's sums and log out of line in normal's vectorised path (40 % slower).
  // A minibatch takes its own path (one layout-independent instantiation, elementwise_rows.hpp), so
  // that the full-batch loops stay as they are.
  void evaluate(const Batch& b) const override {
    if (b.rows)
      this->run_rows(b);
    else
      (this->*Run)(b);
  }
};

// The registry entry of a distribution: its name, doc and input table, and a factory.
template <class Dist>
KernelInfo elementwise_kernel_info() {
  KernelInfo info;
  info.name = Dist::name;
  info.doc = Dist::doc;
  for (const elementwise::Input& in : Dist::inputs)
    info.inputs.push_back({in.name, in.support, in.data_only, in.default_value, in.doc});
  info.elementwise = true;
  info.factory = [](std::vector<Operand> ops, Index size) -> std::unique_ptr<Kernel> {
    return ElementwiseKernel<Dist>::create(std::move(ops), size);
  };
  return info;
}

// Adds a distribution to a registry (the built-in kernels; an extension module calls
// fastvi::extension::register_kernel(elementwise_kernel_info<Dist>()) instead).
template <class Dist>
void register_elementwise(KernelRegistry& registry) {
  registry.add(elementwise_kernel_info<Dist>());
}

}  // namespace fastvi

#include "fastvi/elementwise_rows.hpp"

#undef FASTVI_EW_INLINE
#undef FASTVI_EW_FLATTEN
