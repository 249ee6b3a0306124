// The kernel registry as seen from Python: names, inputs and their supports.
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "../src/kernels/glm_tuning.hpp"  // testing hook below
#include "fastvi/registry.hpp"

namespace py = pybind11;

namespace fastvi::bindings {
namespace {

const char* support_key(Support s) {
  switch (s) {
    case Support::Real:
      return "real";
    case Support::Positive:
      return "positive";
    case Support::NonNegative:
      return "nonnegative";
    case Support::UnitInterval:
      return "unit_interval";
    case Support::Binary:
      return "binary";
    case Support::Count:
      return "count";
  }
  return "?";
}

py::dict describe(const KernelInfo& k) {
  py::list inputs;
  for (const auto& in : k.inputs) {
    py::dict d;
    d["name"] = in.name;
    d["support"] = support_key(in.support);
    d["data_only"] = in.data_only;
    d["default"] = in.default_value ? py::cast(*in.default_value) : py::none();
    d["doc"] = in.doc;
    inputs.append(d);
  }
  py::dict out;
  out["name"] = k.name;
  out["doc"] = k.doc;
  out["elementwise"] = k.elementwise;
  out["inputs"] = inputs;
  return out;
}

}  // namespace

void bind_kernels(py::module_& m) {
  m.def("kernel_names", [] { return KernelRegistry::global().names(); });
  // Testing hook (tests/props_worker.py): 0 makes every GLM evaluation with more than one row
  // chunk run in parallel, so that small property-test models exercise the parallel path.
  m.def("_set_glm_parallel_work", &kernels::glm_tuning::set_parallel_work, py::arg("multiply_adds"));
  m.def(
      "kernel_info", [](const std::string& name) { return describe(KernelRegistry::global().get(name)); },
      py::arg("name"));
}

}  // namespace fastvi::bindings
