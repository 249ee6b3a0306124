// Minibatches of an element-wise kernel made row-wise along its leading axis (Model.add's rows=,
// Kernel::set_data_rows): ElementwiseKernel<Dist>::run_rows, which evaluate() calls instead of the
// layout's run function when Batch::rows is set. Included at the end of elementwise.hpp.
//
// Row r is the elements [r * R, (r + 1) * R), R = size / N. For each draw the chosen rows'
// elements (in the order given, a repeated row again) are gathered into runs of up to kChunk
// elements, and log_density is called once per run with every input a column: a scalar input is
// spread over the run, a parameter's values are read at the run's elements, derived values are
// read from their tables (data) or computed (parameters). Every term is added, data-only ones too,
// and the run's lp and partials count row_weight times. One instantiation per distribution, for
// any layout of its operands: a minibatch costs O(B R) gathers, which is what it is for, and the
// full-batch paths (run_constant, run_elements, run_chunks) are left untouched.
#pragma once

#include "fastvi/elementwise.hpp"

namespace fastvi {
namespace elementwise {
namespace detail {

// The `out` of a run of gathered elements: `element[k]` (a double, exact below 2^53) is the
// broadcast element number of the run's k-th value. Partials are scattered back with the weight.
class RowsOut {
 public:
  RowsOut(const Batch& b, const Operand* ops, unsigned params, const double* element, Index len, Index s, double* lp,
          double* kept, double* buffer, Index stride)
      : b_(b),
        ops_(ops),
        params_(params),
        element_(element),
        len_(len),
        s_(s),
        lp_(lp),
        kept_(kept),
        buffer_(buffer),
        stride_(stride) {}
  bool param(int i) const { return (params_ >> i) & 1u; }
  // Every term: the data-only ones were summed over all elements when the factor was built, and a
  // minibatch wants its rows' share (see Kernel::set_data_rows).
  template <class... I>
  Sum term(I...) const {
    return Sum(lp_, len_);
  }
  template <class V>
  FASTVI_EW_INLINE void lp(const V& v) const {
    *lp_ += total(v, len_);
  }
  template <class G>
  FASTVI_EW_INLINE void grad(int i, const G& g) const {
    if (!param(i)) return;
    const Operand& op = ops_[i];
    const double w = b_.row_weight;
    double* rows = b_.grad + s_ * b_.ld + op.row;
    if (op.is_scalar()) {
      rows[0] += w * total(g, len_);
      return;
    }
    // Sequential, so that a row chosen twice (or elements sharing a broadcast entry) add up.
    if constexpr (is_array_v<G>) {
      Eigen::Map<Eigen::ArrayXd>(buffer_, len_) = g;
      for (Index k = 0; k < len_; ++k) rows[op.element(Index(element_[k]))] += w * buffer_[k];
    } else {
      for (Index k = 0; k < len_; ++k) rows[op.element(Index(element_[k]))] += w * double(g);
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
  const double* element_;
  Index len_, s_;
  double* lp_;
  double* kept_;
  double* buffer_;
  Index stride_;
  int used_ = 0;
};

}  // namespace detail
}  // namespace elementwise

template <class Dist>
void ElementwiseKernel<Dist>::run_rows(const Batch& b) const {
  run_rows_impl(b, std::make_index_sequence<K>(), std::make_index_sequence<J>());
}

template <class Dist>
template <size_t... I, size_t... D>
FASTVI_EW_FLATTEN void ElementwiseKernel<Dist>::run_rows_impl(const Batch& b, std::index_sequence<I...>,
                                                              std::index_sequence<D...>) const {
  using elementwise::detail::RowsOut;
  const Index row_len = size_ / rows_;
  const Index stride = rows_stride(b.row_count);
  const Index run = std::min(stride, elementwise::kChunk);
  // Scratch (subsample_scratch_size): the run's element numbers, K inputs, J derived values,
  // kMaxKept kept intermediates, and the partials buffer, a column of `stride` each.
  double* const element = b.scratch;
  double* const input = element + stride;
  double* const derived = input + Index(K) * stride;
  double* const kept = derived + Index(J) * stride;
  double* const buffer = kept + Index(elementwise::kMaxKept) * stride;

  // Input i's values at the run's elements, into its column.
  auto gather = [&](const Operand& op, Index s, Index len, double* col) {
    if (!op.is_param) {
      // Data are a scalar or contiguous (the constructor expanded broadcast data).
      if (op.is_scalar())
        std::fill(col, col + len, op.data[0]);
      else
        for (Index k = 0; k < len; ++k) col[k] = op.data[Index(element[k])];
      return;
    }
    const double* rows = b.value + s * b.ld + op.row;
    for (Index k = 0; k < len; ++k) col[k] = rows[op.element(Index(element[k]))];
  };
  // Derived value D at the run's elements: its table for data (one entry for a scalar), else
  // computed from the source's gathered column.
  auto derive = [&](auto d, Index len) {
    constexpr size_t Dn = decltype(d)::value;
    const Operand& op = ops_[source<Dn>];
    double* col = derived + Index(Dn) * stride;
    if (op.is_param) {
      Eigen::Map<Eigen::ArrayXd>(col, len) =
          typename DerivedAt<Dn>::Fn{}(Column(input + Index(source<Dn>) * stride, len));
    } else if (tables_[Dn].size() == 1) {
      std::fill(col, col + len, tables_[Dn][0]);
    } else {
      for (Index k = 0; k < len; ++k) col[k] = tables_[Dn][Index(element[k])];
    }
  };

  (void)derive;  // unused without Derived values
  for (Index s = 0; s < b.draws; ++s) {
    double lp = 0.0;
    Index len = 0;
    auto flush = [&] {
      (gather(ops_[I], s, len, input + Index(I) * stride), ...);
      (derive(std::integral_constant<size_t, D>(), len), ...);
      RowsOut out(b, ops_.data(), params_, element, len, s, &lp, kept, buffer, stride);
      Dist::log_density(out, Column(input + Index(I) * stride, len)..., Column(derived + Index(D) * stride, len)...);
      len = 0;
    };
    for (Index k = 0; k < b.row_count; ++k) {
      const Index first = b.rows[k] * row_len;
      for (Index n = first; n < first + row_len; ++n) {
        element[len++] = double(n);
        if (len == run) flush();
      }
    }
    if (len > 0) flush();
    b.lp[s] += b.row_weight * lp;
  }
}

}  // namespace fastvi
