// The kernel registry as seen from Python: names, inputs and their supports.
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "../src/kernels/glm_tuning.hpp"  // testing hook below
#include "fastvi/registry.hpp"

namespace py = pybind11;

namespace fastvi::bindings {
namespace {

py::dict describe(const KernelInfo& k) {
  py::list inputs;
  for (const auto& in : k.inputs) {
    py::dict d;
    d["name"] = in.name;
    d["support"] = support_key(in.support);
    d["data_only"] = in.data_only;
    d["default"] = in.default_value ? py::cast(*in.default_value) : py::none();
    d["doc"] = in.doc;
    d["aliases"] = py::tuple(py::cast(in.aliases));
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
  // The supports, from the core's one table: keys in order, and whether a number lies in one.
  m.def("support_keys", [] {
    std::vector<std::string> keys;
    for (const auto& info : supports()) keys.push_back(info.key);
    return keys;
  });
  m.def(
      "in_support", [](const std::string& key, double x) { return in_support(support_from_key(key), x); },
      py::arg("support"), py::arg("x"));
  // Testing hook (tests/props_worker.py): 0 makes every GLM evaluation with more than one row
  // chunk run in parallel, so that small property-test models exercise the parallel path.
  m.def("_set_glm_parallel_work", &kernels::glm_tuning::set_parallel_work, py::arg("multiply_adds"));
  m.def(
      "kernel_info", [](const std::string& name) { return describe(KernelRegistry::global().get(name)); },
      py::arg("name"));
}

}  // namespace fastvi::bindings
