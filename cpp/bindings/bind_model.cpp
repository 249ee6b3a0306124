// Model building (parameters, expression nodes, factors) and point evaluation of the log density.
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <utility>

#include "bindings.hpp"
#include "fastvi/broadcast.hpp"
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

// A data operand that refers to `values` (C-contiguous float64 or float32, e.g. a numpy.memmap)
// instead of copying it: the core reads it in place for inputs declared in_place (a GLM's design
// matrix) and widens it into a float64 copy for any other. The operand keeps the array alive; the
// reference is dropped with the GIL held, whichever thread drops the operand.
Operand view_operand(const std::string& name, const py::array& values) {
  const bool f64 = py::isinstance<py::array_t<double>>(values), f32 = py::isinstance<py::array_t<float>>(values);
  if (!(f64 || f32) || !(values.flags() & py::array::c_style))
    throw py::type_error("view_operand: '" + name + "' must be a C-contiguous float64 or float32 array");
  Operand op;
  op.name = name;
  op.source = "data";
  op.shape.assign(values.shape(), values.shape() + values.ndim());
  op.view = values.data();
  op.view_is_float32 = f32;
  op.view_owner = std::shared_ptr<const void>(new py::object(values), [](const py::object* o) {
    py::gil_scoped_acquire gil;
    delete o;
  });
  return op;
}

Matrix as_draws(const Eigen::Ref<const Matrix>& zeta, Index dim) {
  if (zeta.rows() != dim)
    throw std::invalid_argument("zeta must have " + std::to_string(dim) +
                                " rows (one per unconstrained coordinate), got " + std::to_string(zeta.rows()));
  return zeta;
}

struct Minibatch {
  const std::vector<Index>* rows;
  double weight;
};

// (lp, grad) at unconstrained draws zeta (D x S), on every row or, with `batch`, with the row-wise
// factors on its rows (ModelWorkspace::rows). Every call has its own workspace and holds the
// model's evaluation lock: calls from several threads run at once, and the model cannot change
// under them.
std::pair<Vector, Matrix> log_density_on_rows(const Model& self, const Eigen::Ref<const Matrix>& zeta,
                                              const Minibatch* batch, int threads) {
  Matrix z = as_draws(zeta, self.dim());
  Vector lp(z.cols());
  Matrix grad(z.rows(), z.cols());
  {
    py::gil_scoped_release release;
    const auto lock = self.evaluation_lock();
    ModelWorkspace ws;
    self.prepare(ws, z.cols(), threads, batch ? Index(batch->rows->size()) : 0);
    if (batch) {
      ws.rows = batch->rows->data();
      ws.row_weight = batch->weight;
    }
    self.log_density(z, ws, lp, grad, threads);
  }
  return {std::move(lp), std::move(grad)};
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Operand>(m, "Operand")
      .def_readonly("name", &Operand::name)
      .def_readonly("source", &Operand::source)
      .def_readonly("shape", &Operand::shape)
      .def_readonly("is_param", &Operand::is_param);
  m.def("data_operand", &data_operand, py::arg("name"), py::arg("values"));
  m.def("view_operand", &view_operand, py::arg("name"), py::arg("values"));

  py::enum_<BinaryOp>(m, "BinaryOp")
      .value("add", BinaryOp::Add)
      .value("sub", BinaryOp::Sub)
      .value("mul", BinaryOp::Mul)
      .value("div", BinaryOp::Div)
      .value("pow", BinaryOp::Pow)
      .value("log_add_exp", BinaryOp::LogAddExp);
  py::enum_<UnaryOp>(m, "UnaryOp")
      .value("neg", UnaryOp::Neg)
      .value("exp", UnaryOp::Exp)
      .value("log", UnaryOp::Log)
      .value("log1p_exp", UnaryOp::Log1pExp)
      .value("inv_logit", UnaryOp::InvLogit)
      .value("sqrt", UnaryOp::Sqrt)
      .value("square", UnaryOp::Square)
      .value("abs", UnaryOp::Abs)
      .value("log1m", UnaryOp::Log1m)
      .value("lgamma", UnaryOp::LGamma)
      .value("log1p", UnaryOp::Log1p)
      .value("expm1", UnaryOp::Expm1)
      .value("tanh", UnaryOp::Tanh)
      .value("logit", UnaryOp::Logit)
      .value("log_inv_logit", UnaryOp::LogInvLogit);
  py::enum_<SegmentOp>(m, "SegmentOp")
      .value("sum", SegmentOp::Sum)
      .value("log_sum_exp", SegmentOp::LogSumExp)
      .value("cumsum", SegmentOp::CumSum)
      .value("log_softmax", SegmentOp::LogSoftmax)
      .value("softmax", SegmentOp::Softmax);

  py::class_<Model>(m, "Model")
      .def(py::init<>())
      .def("add_param",
           py::overload_cast<const std::string&, const std::vector<Index>&, double, double>(&Model::add_param),
           py::arg("name"), py::arg("shape"), py::arg("lower"), py::arg("upper"),
           "Declares a parameter block; returns its block id.")
      .def("add_param",
           py::overload_cast<const std::string&, const std::vector<Index>&, const std::string&>(&Model::add_param),
           py::arg("name"), py::arg("shape"), py::arg("transform"),
           "Declares a parameter block with a vector transform; returns its block id.")
      .def("block_operand", &Model::block_operand, py::arg("input"), py::arg("block"))
      .def(
          "block",
          [](const Model& self, Index id) {
            const RowBlock& b = self.block(id);
            py::dict d;
            d["name"] = b.name;
            d["shape"] = py::tuple(py::cast(b.shape));
            d["row"] = b.row;
            d["size"] = b.size;
            d["lower"] = b.lower;
            d["upper"] = b.upper;
            d["is_param"] = b.is_param;
            return d;
          },
          py::arg("id"))
      .def("param_offset", [](const Model& self, const std::string& name) { return self.param(name).offset; })
      .def(
          "param_free", [](const Model& self, const std::string& name) { return self.param(name).free; },
          py::arg("name"), "The parameter's coordinates in zeta.")
      // Expression nodes. Each returns the new block id; shapes are numpy-broadcast here too.
      .def(
          "add_binary",
          [](Model& self, BinaryOp op, Operand a, Operand b, const std::string& name, double lower, double upper) {
            std::vector<Operand> ops{std::move(a), std::move(b)};
            const std::vector<Index> shape = broadcast_shape(ops, name);
            for (auto& o : ops) set_broadcast(o, shape);
            auto node = make_binary(op, std::move(ops[0]), std::move(ops[1]), shape_size(shape));
            return self.add_node(std::move(node), name, shape, lower, upper);
          },
          py::arg("op"), py::arg("a"), py::arg("b"), py::arg("name"), py::arg("lower"), py::arg("upper"))
      .def(
          "add_unary",
          [](Model& self, UnaryOp op, Operand a, const std::string& name, double lower, double upper) {
            const std::vector<Index> shape = a.shape;
            return self.add_node(make_unary(op, std::move(a)), name, shape, lower, upper);
          },
          py::arg("op"), py::arg("a"), py::arg("name"), py::arg("lower"), py::arg("upper"))
      .def(
          "add_matvec",
          [](Model& self, const DoubleArray& x, Operand v, const std::string& name) {
            if (x.ndim() != 2) throw std::invalid_argument(name + ": X must be 2-D");
            RowMatrix xm = Eigen::Map<const RowMatrix>(x.data(), x.shape(0), x.shape(1));
            return self.add_node(make_matvec(std::move(xm), std::move(v)), name, {Index(x.shape(0))}, -kInf, kInf);
          },
          py::arg("x"), py::arg("v"), py::arg("name"))
      .def(
          "add_gather",
          [](Model& self, Operand a, const std::vector<Index>& index, const std::vector<Index>& shape,
             const std::string& name) {
            const double lower = a.lower, upper = a.upper;
            return self.add_node(make_gather(std::move(a), index), name, shape, lower, upper);
          },
          py::arg("a"), py::arg("index"), py::arg("shape"), py::arg("name"))
      .def(
          "add_sum",
          [](Model& self, Operand a, const std::string& name, double lower, double upper) {
            return self.add_node(make_sum(std::move(a)), name, {}, lower, upper);
          },
          py::arg("a"), py::arg("name"), py::arg("lower"), py::arg("upper"))
      .def(
          "add_segmented",
          [](Model& self, SegmentOp op, Operand a, const std::vector<Index>& index, const std::vector<Index>& offsets,
             const std::vector<Index>& shape, const std::string& name, double lower, double upper) {
            return self.add_node(make_segmented(op, std::move(a), index, offsets), name, shape, lower, upper);
          },
          py::arg("op"), py::arg("a"), py::arg("index"), py::arg("offsets"), py::arg("shape"), py::arg("name"),
          py::arg("lower"), py::arg("upper"))
      .def(
          "add_concat",
          [](Model& self, std::vector<Operand> parts, const std::vector<Index>& part, const std::vector<Index>& element,
             const std::vector<Index>& shape, const std::string& name, double lower, double upper) {
            return self.add_node(make_concat(std::move(parts), part, element), name, shape, lower, upper);
          },
          py::arg("parts"), py::arg("part"), py::arg("element"), py::arg("shape"), py::arg("name"), py::arg("lower"),
          py::arg("upper"))
      .def(
          "add_matmul",
          [](Model& self, Operand a, Operand b, Index n, Index k, Index m, const std::vector<Index>& shape,
             const std::string& name) {
            return self.add_node(make_matmul(std::move(a), std::move(b), n, k, m), name, shape, -kInf, kInf);
          },
          py::arg("a"), py::arg("b"), py::arg("n"), py::arg("k"), py::arg("m"), py::arg("shape"), py::arg("name"))
      .def(
          "add_exp_quad_cov",
          [](Model& self, const DoubleArray& x, Operand alpha, Operand rho, const std::string& name, double upper) {
            if (x.ndim() != 2) throw std::invalid_argument(name + ": x must be 2-D (N, D)");
            const RowMatrix xm = Eigen::Map<const RowMatrix>(x.data(), x.shape(0), x.shape(1));
            const Index n = xm.rows();
            return self.add_node(make_exp_quad_cov(xm, std::move(alpha), std::move(rho)), name, {n, n}, 0.0, upper);
          },
          py::arg("x"), py::arg("alpha"), py::arg("rho"), py::arg("name"), py::arg("upper"))
      .def(
          "add_add_diag",
          [](Model& self, Operand k, Operand d, const std::string& name, double lower, double upper) {
            const std::vector<Index> shape = k.shape;
            return self.add_node(make_add_diag(std::move(k), std::move(d)), name, shape, lower, upper);
          },
          py::arg("k"), py::arg("d"), py::arg("name"), py::arg("lower"), py::arg("upper"))
      .def(
          "add_cholesky",
          [](Model& self, Operand k, const std::string& name) {
            const std::vector<Index> shape = k.shape;
            return self.add_node(make_cholesky(std::move(k)), name, shape, -kInf, kInf);
          },
          py::arg("k"), py::arg("name"))
      .def(
          "add_target",
          [](Model& self, Operand a, const std::string& label) {
            if (!a.is_param) throw std::invalid_argument(label + ": a factor needs a parameter or expression");
            self.add_bound_factor("factor", make_target(std::move(a)), label);
          },
          py::arg("a"), py::arg("label"), "Adds the sum of a block's elements to the log density (Model.factor).")
      .def(
          "reshaped_operand",
          [](const Model& self, const std::string& input, Index block, const std::vector<Index>& shape) {
            Operand op = self.block_operand(input, block);
            if (shape_size(shape) != op.size())
              throw std::invalid_argument(input + ": cannot reshape " + std::to_string(op.size()) + " elements");
            op.shape = shape;
            return op;
          },
          py::arg("input"), py::arg("block"), py::arg("shape"),
          "An operand that reads block `block` with another shape of the same size (a reshape).")
      .def("add_factor", &Model::add_factor, py::arg("kernel"), py::arg("operands"), py::arg("label"),
           py::arg("rows") = std::nullopt,
           "Binds a registered kernel; `rows`: the axis along which the factor is row-wise (minibatches), or None.")
      .def("add_kernel_logp", &Model::add_kernel_logp, py::arg("kernel"), py::arg("operands"), py::arg("label"),
           "Adds a node holding an element-wise kernel's log density per element (fv.logp); returns its block id.")
      .def_property_readonly("dim", &Model::dim)
      .def_property_readonly(
          "data_rows", &Model::data_rows,
          "rows N shared by the row-wise factors (the GLMs, factors added with rows=), which minibatches "
          "subsample; 0 if none")
      .def_property_readonly("rows", &Model::rows)
      .def_property_readonly("param_values", &Model::param_values)
      .def_property_readonly("num_factors", [](const Model& self) { return self.factors().size(); })
      .def(
          "values",
          [](const Model& self, const Eigen::Ref<const Matrix>& zeta) {
            Matrix z = as_draws(zeta, self.dim());
            Matrix value;
            const auto lock = self.evaluation_lock();
            self.values(z, value);
            return value;
          },
          py::arg("zeta"), "The value matrix (rows x S) at unconstrained draws zeta (D x S).")
      .def(
          "unconstrain",
          [](const Model& self, const Eigen::Ref<const Vector>& theta) {
            if (theta.size() != self.param_values())
              throw std::invalid_argument("theta must have length " + std::to_string(self.param_values()));
            Vector zeta(self.dim());
            self.unconstrain(theta, zeta);
            return zeta;
          },
          py::arg("theta"))
      .def(
          "log_density",
          [](const Model& self, const Eigen::Ref<const Matrix>& zeta, int threads) {
            return log_density_on_rows(self, zeta, nullptr, threads);
          },
          py::arg("zeta"), py::arg("threads") = 1,
          "Log density (incl. log-Jacobians) and its gradient at unconstrained draws zeta (D x S).")
      .def(
          "log_density_rows",
          [](const Model& self, const Eigen::Ref<const Matrix>& zeta, const std::vector<Index>& rows, double row_weight,
             int threads) {
            const Index n = self.data_rows();
            if (n == 0) throw std::invalid_argument("the model has no row-wise factors");
            if (rows.empty()) throw std::invalid_argument("rows must not be empty");
            for (Index r : rows)
              if (r < 0 || r >= n)
                throw std::invalid_argument("rows must be row numbers in [0, " + std::to_string(n) + ")");
            const Minibatch batch{&rows, row_weight};
            return log_density_on_rows(self, zeta, &batch, threads);
          },
          py::arg("zeta"), py::arg("rows"), py::arg("row_weight"), py::arg("threads") = 1,
          "log_density with the row-wise factors (GLMs, rows=) on a minibatch: `rows` (repeats allowed), each row's "
          "terms weighted by row_weight (for tests; fits draw their own minibatches).")
      .def(
          "log_density_constrained",
          [](const Model& self, const Eigen::Ref<const Matrix>& theta, int threads) {
            if (theta.rows() != self.param_values())
              throw std::invalid_argument("theta must have " + std::to_string(self.param_values()) + " rows, got " +
                                          std::to_string(theta.rows()));
            Matrix t = theta;
            Vector lp(t.cols());
            Matrix grad(t.rows(), t.cols());
            {
              py::gil_scoped_release release;
              const auto lock = self.evaluation_lock();
              ModelWorkspace ws;
              self.prepare(ws, t.cols(), threads);
              self.log_density_constrained(t, ws, lp, grad, threads);
            }
            return py::make_tuple(lp, grad);
          },
          py::arg("theta"), py::arg("threads") = 1,
          "The factors' log density (no log-Jacobians) and its gradient at constrained values theta (D x S).");
}

}  // namespace fastvi::bindings
