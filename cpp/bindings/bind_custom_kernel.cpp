// User-defined kernels: kernels written in Python (fastvi.register_kernel), and the PyCapsule
// through which separately compiled extension modules register C++ kernels (fastvi/extension.hpp).
//
// A Python kernel is a Kernel that calls the user's function once per batch of draws, with the GIL
// held. Every input reaches the function as a read-only float64 array with a trailing draws axis:
// a parameter as the factor's shape + (S,), data as the factor's shape + (1,), both numpy
// broadcast views (zero strides where the input is broadcast) of buffers that hold only the
// input's own values, so gathering a step's values copies each parameter's own elements once and
// allocates nothing. The function returns (lp, grads); gradients of broadcast inputs are summed
// back over the elements they were broadcast to.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>

#include "bindings.hpp"
#include "fastvi/broadcast.hpp"
#include "fastvi/extension.hpp"
#include "fastvi/format.hpp"
#include "fastvi/registry.hpp"

namespace py = pybind11;

namespace fastvi::bindings {
namespace {

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using Shape = std::vector<py::ssize_t>;

std::string shape_text(const Shape& shape) { return format_shape(std::vector<Index>(shape.begin(), shape.end())); }

Shape array_shape(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

// a.shape == shape, without allocating.
bool has_shape(const py::array& a, const Shape& shape) {
  if (a.ndim() != py::ssize_t(shape.size())) return false;
  for (size_t i = 0; i < shape.size(); ++i)
    if (a.shape(py::ssize_t(i)) != shape[i]) return false;
  return true;
}

Shape with_draws(Shape shape, Index draws) {
  shape.push_back(py::ssize_t(draws));
  return shape;
}

Support parse_support(const std::string& key) { return support_from_key(key); }

// What register_kernel keeps for a Python kernel; shared by every factor bound to it. Lives in the
// process-wide registry, which is never destroyed, so `fn` is never released without the GIL.
struct PythonKernelDef {
  std::string name;
  std::string input_list;  // "y, loc, scale", for messages
  py::object fn;
};

class PythonKernel final : public Kernel {
 public:
  PythonKernel(std::shared_ptr<const PythonKernelDef> def, std::vector<Operand> ops, bool elementwise)
      : def_(std::move(def)) {
    py::gil_scoped_acquire gil;
    if (elementwise) {
      const std::vector<Index> b = broadcast_shape(ops, "kernel '" + def_->name + "'");
      lp_shape_.assign(b.begin(), b.end());
    }
    broadcast_to_ = py::module_::import("numpy").attr("broadcast_to");
    py::list params;
    for (auto& op : ops) {
      Input in;
      in.key = py::str(op.name);
      Shape own(op.shape.begin(), op.shape.end());
      in.shape = elementwise ? lp_shape_ : own;
      in.padded = Shape(in.shape.size() - own.size(), 1);
      in.padded.insert(in.padded.end(), own.begin(), own.end());
      in.elements = 1;
      for (auto d : in.shape) in.elements *= Index(d);
      in.op = std::move(op);
      if (in.op.is_param) {
        params.append(in.key);
      } else {
        // Data never changes: one copy of its own values, seen as shape + (1,).
        py::array_t<double> values(with_draws(in.padded, 1));
        if (in.op.data.size() > 0)
          std::memcpy(values.mutable_data(), in.op.data.data(), sizeof(double) * size_t(in.op.data.size()));
        in.view = broadcast_to_(values, py::tuple(py::cast(with_draws(in.shape, 1))));
      }
      inputs_.push_back(std::move(in));
    }
    params_ = py::tuple(params);
  }

  ~PythonKernel() override {
    if (!Py_IsInitialized()) {  // too late to release Python objects: leak them
      for (auto& in : inputs_) in.release();
      params_.release();
      broadcast_to_.release();
      return;
    }
    py::gil_scoped_acquire gil;
    inputs_.clear();
    params_ = py::object();
    broadcast_to_ = py::object();
  }

  // Each call builds its own buffers and argument tuple (a Python kernel's cost is the call into
  // Python, not these few arrays): nothing is kept between calls, so fits in several threads can
  // share the kernel.
  void evaluate(const Batch& b) const override {
    if (b.draws == 0) return;
    py::gil_scoped_acquire gil;
    try {
      call(b);
    } catch (py::error_already_set& err) {
      if (!err.matches(PyExc_KeyboardInterrupt)) throw;
      // Ctrl-C landed in the user's function (or in numpy while the arguments were built). Raise
      // the interrupt flag again, so that the fit's monitor stops the fit the way it does for any
      // Ctrl-C (returning the state reached so far), or, outside a fit, Python raises
      // KeyboardInterrupt as soon as we return. This batch has no log density. Until the
      // monitor's next check (at most one ELBO window later) Python raises KeyboardInterrupt
      // again on entry and we come back here, so those steps are skipped, and the result says so.
      PyErr_SetInterrupt();
      for (Index s = 0; s < b.draws; ++s) b.lp[s] = kNaN;
    }
  }

 private:
  // One call of fn on the batch (with the GIL held); Python errors leave as error_already_set.
  void call(const Batch& b) const {
    const Index S = b.draws;
    py::tuple args(inputs_.size() + 1);
    for (size_t i = 0; i < inputs_.size(); ++i) {
      const Input& in = inputs_[i];
      if (!in.op.is_param) {
        args[i] = in.view;
        continue;
      }
      // The parameter's own elements x S, row-major (element e, draw s at e * S + s), seen by fn
      // broadcast to the factor's shape + (S,).
      py::array_t<double> buffer(with_draws(in.padded, S));
      double* out = buffer.mutable_data();
      const Index own = in.op.size();
      for (Index s = 0; s < S; ++s) {
        const double* column = b.value + s * b.ld + in.op.row;
        for (Index e = 0; e < own; ++e) out[e * S + s] = column[e];
      }
      args[i] = broadcast_to_(buffer, py::tuple(py::cast(with_draws(in.shape, S))));
    }
    args[inputs_.size()] = params_;
    PyObject* raw = PyObject_Call(def_->fn.ptr(), args.ptr(), nullptr);
    if (raw == nullptr) {
      py::error_already_set err;
      if (!err.matches(PyExc_KeyboardInterrupt)) annotate(err);
      throw err;
    }
    const py::object result = py::reinterpret_steal<py::object>(raw);
    if (!(PyTuple_Check(raw) || PyList_Check(raw)) || PySequence_Size(raw) != 2)
      fail<py::type_error>("the function must return a pair (lp, grads), got " + type_name(result));
    add_lp(b, py::reinterpret_borrow<py::object>(PySequence_Fast_GET_ITEM(raw, 0)));
    add_grads(b, py::reinterpret_borrow<py::object>(PySequence_Fast_GET_ITEM(raw, 1)));
  }

  struct Input {
    Operand op;
    Shape shape;         // what fn sees, less the draws axis: the factor's shape (or the input's own)
    Shape padded;        // the input's own shape with leading 1s up to shape's rank
    Index elements = 0;  // prod(shape)
    py::str key;
    py::object view;  // data: the array fn receives

    void release() {
      key.release();
      view.release();
    }
  };

  template <class E>
  [[noreturn]] void fail(const std::string& what) const {
    throw E("kernel '" + def_->name + "': " + what);
  }

  static std::string type_name(const py::handle& h) { return Py_TYPE(h.ptr())->tp_name; }

  void annotate(py::error_already_set& err) const {
    const py::object& value = err.value();
    if (!value || !py::hasattr(value, "add_note")) return;
    try {
      value.attr("add_note")("raised by the function of Python kernel '" + def_->name + "'");
    } catch (py::error_already_set&) {
    }
  }

  void add_lp(const Batch& b, const py::object& obj) const {
    const Index S = b.draws;
    const auto lp = DoubleArray::ensure(obj);
    // (S,), lp_shape_ + (S,) and lp_shape_ + (1,)
    const Shape lp_draws{py::ssize_t(S)}, lp_full = with_draws(lp_shape_, S), lp_one = with_draws(lp_shape_, 1);
    auto want = [&] { return shape_text(lp_draws) + (lp_shape_.empty() ? "" : " or " + shape_text(lp_full)); };
    if (!lp) {
      PyErr_Clear();
      fail<py::type_error>("lp must be an array of shape " + want() + ", got " + type_name(obj));
    }
    // (S,), or element-wise terms shape + (S,); a trailing axis of 1 instead of S (a term computed
    // from data alone) is the same for every draw.
    Index last = 0;
    if (has_shape(lp, lp_draws) || has_shape(lp, lp_full)) {
      last = S;
    } else if (has_shape(lp, lp_one) || (!lp_shape_.empty() && has_shape(lp, lp_single_))) {
      last = 1;
    } else {
      fail<py::value_error>("lp has shape " + shape_text(array_shape(lp)) + ", expected " + want() + " for " +
                            std::to_string(S) + " draws");
    }
    const double* v = lp.data();
    const Index n_elements = Index(lp.size()) / last;
    for (Index s = 0; s < S; ++s) {
      double sum = 0.0;  // in element order
      for (Index n = 0; n < n_elements; ++n) sum += v[n * last + (last == 1 ? 0 : s)];
      b.lp[s] += sum;
    }
  }

  void add_grads(const Batch& b, const py::object& obj) const {
    if (obj.is_none()) return;
    if (!PyDict_Check(obj.ptr()))
      fail<py::type_error>("grads must be a dict {input name: array} (or None), got " + type_name(obj));
    const Index S = b.draws;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(obj.ptr(), &pos, &key, &value)) {
      const Input* in = nullptr;
      for (const Input& candidate : inputs_) {
        const int eq = PyObject_RichCompareBool(key, candidate.key.ptr(), Py_EQ);
        if (eq < 0) throw py::error_already_set();
        if (eq == 1) {
          in = &candidate;
          break;
        }
      }
      if (in == nullptr)
        fail<py::value_error>("grads has an entry for " + std::string(py::repr(key)) +
                              ", which is not one of its inputs (" + def_->input_list + ")");
      if (value == Py_None || !in->op.is_param) continue;  // zero, or data: nothing to add
      const Shape full = with_draws(in->shape, S), own = with_draws(Shape(in->op.shape.begin(), in->op.shape.end()), S);
      const auto g = DoubleArray::ensure(py::reinterpret_borrow<py::object>(value));
      if (!g) {
        PyErr_Clear();
        fail<py::type_error>("the gradient for input '" + in->op.name + "' must be an array of shape " +
                             shape_text(full) + ", got " + type_name(py::handle(value)));
      }
      const double* v = g.data();
      if (has_shape(g, full)) {
        for (Index s = 0; s < S; ++s)
          for (Index n = 0; n < in->elements; ++n) in->op.add_grad(b, n, s, v[n * S + s]);
      } else if (has_shape(g, own)) {  // already summed over broadcasting: the input's own elements
        const Index n_own = in->op.size();
        for (Index s = 0; s < S; ++s) {
          double* column = b.grad + s * b.ld + in->op.row;
          for (Index e = 0; e < n_own; ++e) column[e] += v[e * S + s];
        }
      } else {
        std::string expected = shape_text(full);
        if (own != full) expected += " (or its own shape plus draws, " + shape_text(own) + ")";
        fail<py::value_error>("the gradient for input '" + in->op.name + "' has shape " + shape_text(array_shape(g)) +
                              ", expected " + expected + " like the input's array for " + std::to_string(S) + " draws");
      }
    }
  }

  std::shared_ptr<const PythonKernelDef> def_;
  std::vector<Input> inputs_;
  Shape lp_shape_;  // element-wise kernels: the factor's broadcast shape; else empty
  const Shape lp_single_{1};
  py::object broadcast_to_;
  py::object params_;  // tuple of the names of the inputs that are parameters
};

void register_python_kernel(const std::string& name, const std::string& doc, const py::list& inputs,
                            const py::object& fn, bool elementwise) {
  if (!PyCallable_Check(fn.ptr())) throw py::type_error("kernel '" + name + "': fn must be callable");
  auto def = std::make_shared<PythonKernelDef>();
  def->name = name;
  def->fn = fn;
  KernelInfo info;
  info.name = name;
  info.doc = doc;
  info.elementwise = elementwise;
  for (const auto& item : inputs) {
    const auto t = item.cast<py::tuple>();  // (name, support, data_only, default or None, doc)
    InputInfo in;
    in.name = t[0].cast<std::string>();
    in.support = parse_support(t[1].cast<std::string>());
    in.data_only = t[2].cast<bool>();
    if (!t[3].is_none()) in.default_value = t[3].cast<double>();
    in.doc = t[4].cast<std::string>();
    def->input_list += (def->input_list.empty() ? "" : ", ") + in.name;
    info.inputs.push_back(std::move(in));
  }
  info.factory = [def = std::shared_ptr<const PythonKernelDef>(def), elementwise](std::vector<Operand> ops, Index) {
    return std::make_unique<PythonKernel>(def, std::move(ops), elementwise);
  };
  KernelRegistry::global().add(std::move(info));
}

// What extension modules find in the capsule. An Api holds no Python objects: it is a plain
// static, valid for the life of the process.
const extension::Api kExtensionApi{
    extension::abi_here(),
    [](KernelInfo info) { KernelRegistry::global().add(std::move(info)); },
};

}  // namespace

void bind_custom_kernels(py::module_& m) {
  m.def("register_python_kernel", &register_python_kernel, py::arg("name"), py::arg("doc"), py::arg("inputs"),
        py::arg("fn"), py::arg("elementwise"),
        "Registers a kernel computed by a Python function (use fastvi.register_kernel).");
  m.attr("_extension_api") = py::capsule(&kExtensionApi, extension::kCapsuleName);
  m.def("compile_flags", [] {
    std::vector<std::string> flags;
#ifdef FASTVI_MARCH
    flags.emplace_back("-march=" FASTVI_MARCH);
#endif
    return flags;
  });
  // The CPU level this build targets: "native", an x86-64 level such as "x86-64-v3", or
  // "baseline" (the compiler's default target).
#ifdef FASTVI_MARCH
  m.attr("isa") = FASTVI_MARCH;
#else
  m.attr("isa") = "baseline";
#endif
  m.def("extension_abi", [] {
    const extension::AbiFacts a = kExtensionApi.abi;
    py::dict d;
    d["api_version"] = a.api_version;
    d["eigen_version"] = a.eigen_version;
    d["eigen_align_bytes"] = a.eigen_align_bytes;
    d["compiler_version"] = a.compiler_version;
    return d;
  });
}

}  // namespace fastvi::bindings
