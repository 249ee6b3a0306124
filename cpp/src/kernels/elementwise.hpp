// Helpers shared by the element-wise kernels (see normal.cpp for the basic pattern).
//
// When every operand is contiguous or scalar (Operand::whole_draw(), the common case: no
// broadcasting along an axis) and there are at least kMinWholeDraw elements, normal,
// bernoulli_logit and poisson_log work a draw at a time with Eigen array expressions, which the
// compiler vectorises (with_draw and add_grad_draw in operand.hpp, math.hpp's array forms);
// otherwise they go element by element.
//
// Two ways the kernels move work out of the per-draw loop, both decided in the constructor:
//  - a log-density term that depends on data operands only is the same for every draw, so its sum
//    over the elements is computed once (sum_data) and added to each draw;
//  - a transcendental function of a data operand that the loop still needs (log y when only the
//    shape is a parameter, say) is tabulated once per element of that operand (map_data) and read
//    back with op.element(n), so a scalar constant costs one entry.
#pragma once

#include <utility>

#include "fastvi/operand.hpp"

namespace fastvi::kernels {

// Broadcast element n of a data operand; usable in a constructor, where there is no Batch.
inline double data_at(const Operand& op, Index n) { return op.data[op.element(n)]; }

// sum_{n < size} term(n), for terms that involve data operands only.
template <class F>
double sum_data(Index size, F&& term) {
  double sum = 0.0;
  for (Index n = 0; n < size; ++n) sum += term(n);
  return sum;
}

// f applied to each of a data operand's own values; empty for a parameter.
template <class F>
Vector map_data(const Operand& op, F&& f) {
  if (op.is_param) return Vector();
  Vector out(op.data.size());
  for (Index i = 0; i < out.size(); ++i) out[i] = f(op.data[i]);
  return out;
}

// f(value) of broadcast element n in draw s: computed for a parameter, read from `table` (built by
// map_data with the same f) for data.
template <class F>
double mapped(const Operand& op, const Vector& table, const Batch& b, Index n, Index s, F&& f) {
  return op.is_param ? f(op.value(b, n, s)) : table[op.element(n)];
}

}  // namespace fastvi::kernels
