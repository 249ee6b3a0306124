// Model building (parameters, factors) and point evaluation of the log density.
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "fastvi/model.hpp"

namespace py = pybind11;

namespace fastvi::bindings {
namespace {

using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

Operand data_operand(const std::string& name, const DoubleArray& values) {
  Operand op;
  op.name = name;
  op.source = "data";
  op.shape.assign(values.shape(), values.shape() + values.ndim());
  op.data = Eigen::Map<const Vector>(values.data(), values.size());
  return op;
}

Operand param_operand(const std::string& name, const Model& model, const std::string& param) {
  const ParamBlock& p = model.param(param);
  Operand op;
  op.name = name;
  op.source = param;
  op.is_param = true;
  op.shape = p.shape;
  op.row = p.offset;
  op.lower = p.transform.lower;
  op.upper = p.transform.upper;
  return op;
}

// Converts a D or D x S array to a D x S matrix.
Matrix as_draws(const Eigen::Ref<const Matrix>& zeta, Index dim, const char* what) {
  if (zeta.rows() != dim)
    throw std::invalid_argument(std::string(what) + " must have " + std::to_string(dim) + " rows (one per unconstrained coordinate), got " +
                                std::to_string(zeta.rows()));
  return zeta;
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Operand>(m, "Operand")
      .def_readonly("name", &Operand::name)
      .def_readonly("source", &Operand::source)
      .def_readonly("shape", &Operand::shape)
      .def_readonly("is_param", &Operand::is_param);
  m.def("data_operand", &data_operand, py::arg("name"), py::arg("values"));

  py::class_<Model>(m, "Model")
      .def(py::init<>())
      .def("add_param",
           [](Model& self, const std::string& name, const std::vector<Index>& shape, double lower, double upper) {
             const ParamBlock& p = self.add_param(name, shape, lower, upper);
             return py::make_tuple(p.offset, p.size);
           },
           py::arg("name"), py::arg("shape"), py::arg("lower"), py::arg("upper"))
      .def("param_operand",
           [](const Model& self, const std::string& name, const std::string& param) {
             return param_operand(name, self, param);
           },
           py::arg("name"), py::arg("param"))
      .def("add_factor", &Model::add_factor, py::arg("kernel"), py::arg("operands"), py::arg("label"))
      .def_property_readonly("dim", &Model::dim)
      .def_property_readonly("num_factors", [](const Model& self) { return self.factors().size(); })
      .def("params",
           [](const Model& self) {
             py::list out;
             for (const auto& p : self.params()) {
               py::dict d;
               d["name"] = p.name;
               d["shape"] = py::tuple(py::cast(p.shape));
               d["offset"] = p.offset;
               d["size"] = p.size;
               d["lower"] = p.transform.lower;
               d["upper"] = p.transform.upper;
               out.append(d);
             }
             return out;
           })
      .def("constrain",
           [](const Model& self, const Eigen::Ref<const Matrix>& zeta) {
             Matrix z = as_draws(zeta, self.dim(), "zeta");
             Matrix theta(self.rows(), z.cols());
             self.constrain(z, theta);
             return theta;
           },
           py::arg("zeta"), "Constrained values (rows x S) of unconstrained draws (D x S).")
      .def("unconstrain",
           [](const Model& self, const Eigen::Ref<const Vector>& theta) {
             if (theta.size() != self.dim()) throw std::invalid_argument("theta must have length " + std::to_string(self.dim()));
             Vector zeta(self.dim());
             self.unconstrain(theta, zeta);
             return zeta;
           },
           py::arg("theta"))
      .def("log_density",
           [](Model& self, const Eigen::Ref<const Matrix>& zeta, int threads) {
             Matrix z = as_draws(zeta, self.dim(), "zeta");
             ModelWorkspace ws;
             Vector lp(z.cols());
             Matrix grad(z.rows(), z.cols());
             self.reserve(z.cols());
             {
               py::gil_scoped_release release;
               self.log_density(z, ws, lp, grad, threads);
             }
             return py::make_tuple(lp, grad);
           },
           py::arg("zeta"), py::arg("threads") = 1,
           "Log density (incl. log-Jacobians) and its gradient at unconstrained draws zeta (D x S).");
}

}  // namespace fastvi::bindings
