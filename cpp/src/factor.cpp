// Model::add_factor: matching a kernel's declared inputs to what the user passed, numpy
// broadcasting for element-wise kernels, and support checks, all before any fit starts.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "fastvi/broadcast.hpp"
#include "fastvi/format.hpp"
#include "fastvi/model.hpp"
#include "fastvi/registry.hpp"

namespace fastvi {
namespace {

// `is_parameter`: the operand is a parameter block (not an expression node), whose bounds the user
// declares; an expression's bounds follow from its parts, so the advice differs.
void check_support(const Operand& op, const InputInfo& info, const std::string& label, bool is_parameter) {
  const std::string where = label + ": input '" + op.name + "'";
  if (!op.is_param) {
    const Index n = op.has_view() ? op.size() : op.data.size();
    for (Index i = 0; i < n; ++i) {
      const double x = op.data_value(i);
      if (!std::isfinite(x))
        throw std::invalid_argument(where + " contains " + format_number(x) + " at flat index " + std::to_string(i));
      if (!in_support(info.support, x))
        throw std::invalid_argument(where + " must be " + support_name(info.support) + ", got " + format_number(x) +
                                    " at flat index " + std::to_string(i));
    }
    return;
  }
  if (info.data_only) throw std::invalid_argument(where + " must be data, not the parameter '" + op.source + "'");
  bool ok = true;
  switch (info.support) {
    case Support::Real:
      break;
    case Support::Positive:
    case Support::NonNegative:
      ok = op.lower >= 0;
      break;
    case Support::UnitInterval:
      ok = op.lower >= 0 && op.upper <= 1;
      break;
    case Support::Binary:
    case Support::Count:
      ok = false;
      break;
  }
  if (!ok && is_parameter)
    throw std::invalid_argument(where + " must be " + support_name(info.support) + ", but parameter '" + op.source +
                                "' can take values in [" + format_number(op.lower) + ", " + format_number(op.upper) +
                                "]: declare it with matching lower/upper bounds");
  if (!ok)
    throw std::invalid_argument(where + " must be " + support_name(info.support) + ", but the expression '" +
                                op.source + "' can take values in [" + format_number(op.lower) + ", " +
                                format_number(op.upper) +
                                "] as far as its bounds follow from its parts (interval arithmetic through + - * / "
                                "**, exp, sqrt, abs, softmax, ...): build it from parts whose bounds give the "
                                "support (e.g. fv.exp(log_s) or s * t with s and t declared lower=0)");
}

}  // namespace

std::vector<Operand> Model::bind_operands(const std::string& kernel, const KernelInfo& info,
                                          std::vector<Operand> operands, const std::string& label,
                                          std::vector<Index>& shape) const {
  for (auto& op : operands) {
    // The input op names, by its name or one of its aliases (then renamed to the input's name).
    const auto input = std::find_if(info.inputs.begin(), info.inputs.end(), [&](const InputInfo& in) {
      return in.name == op.name || std::find(in.aliases.begin(), in.aliases.end(), op.name) != in.aliases.end();
    });
    if (input != info.inputs.end() && input->name != op.name) {
      const bool both =
          std::any_of(operands.begin(), operands.end(), [&](const Operand& o) { return o.name == input->name; });
      if (both)
        throw std::invalid_argument(label + ": input '" + input->name + "' given twice (also as '" + op.name +
                                    "', its former name)");
      op.name = input->name;
    }
    if (input == info.inputs.end()) {
      std::string names;
      for (const auto& in : info.inputs) names += (names.empty() ? "" : ", ") + in.name;
      throw std::invalid_argument(label + ": kernel '" + kernel + "' has no input '" + op.name +
                                  "' (its inputs are: " + names + ")");
    }
    if (op.is_param && (op.row < 0 || op.row + op.size() > rows()))
      throw std::invalid_argument(label + ": input '" + op.name + "' refers to rows outside the model");
  }
  // Order the operands as the kernel declares its inputs, filling defaults.
  std::vector<Operand> ordered;
  ordered.reserve(info.inputs.size());
  for (const auto& in : info.inputs) {
    auto it = std::find_if(operands.begin(), operands.end(), [&](const Operand& op) { return op.name == in.name; });
    if (it != operands.end()) {
      if (std::count_if(operands.begin(), operands.end(), [&](const Operand& op) { return op.name == in.name; }) > 1)
        throw std::invalid_argument(label + ": input '" + in.name + "' given twice");
      ordered.push_back(std::move(*it));
    } else if (in.default_value) {
      Operand op;
      op.name = in.name;
      op.source = "default";
      op.data = Vector::Constant(1, *in.default_value);
      ordered.push_back(std::move(op));
    } else {
      throw std::invalid_argument(label + ": kernel '" + kernel + "' needs input '" + in.name + "'");
    }
  }
  for (size_t i = 0; i < ordered.size(); ++i) {
    if (ordered[i].has_view() && (ordered[i].is_param || !info.inputs[i].in_place)) ordered[i].widen_view();
    if (!ordered[i].is_param && !ordered[i].has_view() && ordered[i].data.size() != ordered[i].size())
      throw std::invalid_argument(label + ": input '" + ordered[i].name + "' has " +
                                  std::to_string(ordered[i].data.size()) + " values for shape " +
                                  format_shape(ordered[i].shape));
    const bool is_parameter =
        ordered[i].is_param && std::any_of(params_.begin(), params_.end(), [&](const ParamBlock& p) {
          return p.row == ordered[i].row && p.name == ordered[i].source;
        });
    check_support(ordered[i], info.inputs[i], label, is_parameter);
  }
  shape.clear();
  if (info.elementwise) {
    shape = broadcast_shape(ordered, label);
    for (auto& op : ordered) set_broadcast(op, shape);
  }
  return ordered;
}

void Model::add_factor(const std::string& kernel, std::vector<Operand> operands, const std::string& label,
                       std::optional<Index> rows_axis) {
  const auto lock = change_lock(label);
  const KernelInfo info = KernelRegistry::global().get(kernel);
  if (rows_axis && !info.elementwise)
    throw std::invalid_argument(label + ": rows: kernel '" + kernel +
                                "' is not element-wise, so it has no rows to mark (the GLM kernels are row-wise "
                                "already: batch_size subsamples their rows)");
  std::vector<Index> shape;
  std::vector<Operand> ordered = bind_operands(kernel, info, std::move(operands), label, shape);
  const Index size = info.elementwise ? shape_size(shape, label) : 0;
  Index rows = 0;
  if (rows_axis) {
    const Index ndim = Index(shape.size());
    const Index axis = *rows_axis < 0 ? *rows_axis + ndim : *rows_axis;
    if (axis < 0 || axis >= ndim)
      throw std::invalid_argument(label + ": rows=" + std::to_string(*rows_axis) + " is not an axis of the factor's " +
                                  "shape " + format_shape(shape));
    if (axis != 0)
      throw std::invalid_argument(label + ": rows=" + std::to_string(*rows_axis) + " is axis " + std::to_string(axis) +
                                  " of the factor's shape " + format_shape(shape) +
                                  ", but only the leading axis (rows=0) is supported");
    rows = shape[0];
  }
  Factor f;
  f.label = label;
  f.kernel = kernel;
  try {
    f.impl = info.factory(std::move(ordered), size);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(label + ": " + e.what());
  }
  if (rows > 0 && !f.impl->set_data_rows(rows))
    throw std::invalid_argument(label + ": rows: kernel '" + kernel +
                                "' cannot evaluate a subset of its rows with these inputs (a kernel written in "
                                "Python never can), so it cannot be row-wise");
  factors_.push_back(std::move(f));
}

Index Model::add_kernel_logp(const std::string& kernel, std::vector<Operand> operands, const std::string& label) {
  const auto lock = change_lock(label);
  const KernelInfo info = KernelRegistry::global().get(kernel);
  if (!info.elementwise)
    throw std::invalid_argument(label + ": kernel '" + kernel +
                                "' is not element-wise, so it has no log density per element; add it as a factor");
  std::vector<Index> shape;
  std::vector<Operand> ordered = bind_operands(kernel, info, std::move(operands), label, shape);
  std::unique_ptr<Node> node;
  try {
    node = make_kernel_logp(info, std::move(ordered), shape_size(shape, label));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(label + ": " + e.what());
  }
  return insert_node(std::move(node), label, shape, -kInf, kInf);
}

}  // namespace fastvi
