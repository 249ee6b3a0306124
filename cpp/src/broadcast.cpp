// numpy broadcasting for operands.
#include "fastvi/broadcast.hpp"

#include <stdexcept>

#include "fastvi/format.hpp"

namespace fastvi {

Index shape_size(const std::vector<Index>& shape, const std::string& what) {
  Index n = 1;
  for (Index d : shape) {
    if (d < 0) throw std::invalid_argument(what + ": negative dimension in shape " + format_shape(shape));
    // n * d > kMaxElements, tested without computing n * d
    if (d != 0 && n > kMaxElements / d)
      throw std::invalid_argument(what + ": shape " + format_shape(shape) + " has more than 2**40 elements");
    n *= d;
  }
  return n;
}

// numpy broadcasting of all operand shapes; throws naming the operand that does not fit.
std::vector<Index> broadcast_shape(const std::vector<Operand>& ops, const std::string& label) {
  size_t ndim = 0;
  for (const auto& op : ops) ndim = std::max(ndim, op.shape.size());
  std::vector<Index> out(ndim, 1);
  for (const auto& op : ops) {
    const size_t pad = ndim - op.shape.size();
    for (size_t i = 0; i < op.shape.size(); ++i) {
      const Index d = op.shape[i];
      Index& o = out[pad + i];
      if (d == o || d == 1) continue;
      if (o == 1) {
        o = d;
        continue;
      }
      std::string shapes;
      for (const auto& q : ops) shapes += " " + q.name + format_shape(q.shape);
      throw std::invalid_argument(label + ": input '" + op.name + "' with shape " + format_shape(op.shape) +
                                  " does not broadcast with the other inputs:" + shapes);
    }
  }
  return out;
}

// Sets op's index map so that element n of `shape` (row-major) reads the right element of op.
void set_broadcast(Operand& op, const std::vector<Index>& shape) {
  Index total = 1;
  for (Index d : shape) total *= d;
  op.index_map.clear();
  if (op.size() == 1) {
    op.stride = 0;
    return;
  }
  const size_t pad = shape.size() - op.shape.size();
  bool same = op.size() == total;
  if (same) {
    op.stride = 1;
    return;
  }
  // Strides of op's own (row-major) layout, zero where op broadcasts.
  std::vector<Index> stride(shape.size(), 0);
  Index s = 1;
  for (size_t i = op.shape.size(); i-- > 0;) {
    stride[pad + i] = op.shape[i] == 1 ? 0 : s;
    s *= op.shape[i];
  }
  op.index_map.resize(size_t(total));
  std::vector<Index> idx(shape.size(), 0);
  for (Index n = 0; n < total; ++n) {
    Index e = 0;
    for (size_t i = 0; i < shape.size(); ++i) e += idx[i] * stride[i];
    op.index_map[size_t(n)] = e;
    for (size_t i = shape.size(); i-- > 0;) {  // next row-major multi-index
      if (++idx[i] < shape[i]) break;
      idx[i] = 0;
    }
  }
}

}  // namespace fastvi
