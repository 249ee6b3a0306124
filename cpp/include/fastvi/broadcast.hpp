// numpy broadcasting for operands: shared by element-wise kernels and expression nodes.
#pragma once

#include <string>
#include <vector>

#include "fastvi/operand.hpp"

namespace fastvi {

// The broadcast shape of all operands (numpy rules); throws std::invalid_argument naming the
// operand that does not fit, prefixed by `label`.
std::vector<Index> broadcast_shape(const std::vector<Operand>& ops, const std::string& label);

// Sets op's index map so that element n of `shape` (row-major) reads the right element of op.
void set_broadcast(Operand& op, const std::vector<Index>& shape);

// The number of elements of `shape`. Throws std::invalid_argument (prefixed by `what`) for a
// negative dimension or a size above kMaxElements, before the product can overflow.
Index shape_size(const std::vector<Index>& shape, const std::string& what = "shape");

}  // namespace fastvi
