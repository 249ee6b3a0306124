// The fit loop, run with the GIL released; a monitor re-takes the GIL briefly to check for Ctrl-C
// and to call the user's progress callback.
#include <pybind11/eigen.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "fastvi/fit.hpp"

namespace py = pybind11;

namespace fastvi::bindings {

void bind_fit(py::module_& m) {
  py::class_<Preconditioner>(m, "Preconditioner")
      .def(py::init<>())
      .def_readwrite("shift", &Preconditioner::shift)
      .def_readwrite("diagonal", &Preconditioner::diagonal)
      .def_readwrite("lower", &Preconditioner::lower)
      .def("validate", &Preconditioner::validate)
      .def_property_readonly("log_det", &Preconditioner::log_det);
  py::class_<FitOptions>(m, "FitOptions")
      .def(py::init<>())
      .def_readwrite("steps", &FitOptions::steps)
      .def_readwrite("draws", &FitOptions::draws)
      .def_readwrite("gradient", &FitOptions::gradient)
      .def_readwrite("lr", &FitOptions::lr)
      .def_readwrite("beta1", &FitOptions::beta1)
      .def_readwrite("beta2", &FitOptions::beta2)
      .def_readwrite("adam_epsilon", &FitOptions::adam_epsilon)
      .def_readwrite("eval_every", &FitOptions::eval_every)
      .def_readwrite("tol", &FitOptions::tol)
      .def_readwrite("patience", &FitOptions::patience)
      .def_readwrite("tol_abs", &FitOptions::tol_abs)
      .def_readwrite("noise_z", &FitOptions::noise_z)
      .def_readwrite("max_drift", &FitOptions::max_drift)
      .def_readwrite("block", &FitOptions::block)
      .def_readwrite("average", &FitOptions::average)
      .def_readwrite("average_draws", &FitOptions::average_draws)
      .def_readwrite("refine_factor", &FitOptions::refine_factor)
      .def_readwrite("refine_levels", &FitOptions::refine_levels)
      .def_readwrite("precision", &FitOptions::precision)
      .def_readwrite("batch_size", &FitOptions::batch_size)
      .def_readwrite("control_variate", &FitOptions::control_variate)
      .def_readwrite("seed", &FitOptions::seed)
      .def_readwrite("threads", &FitOptions::threads)
      .def_readwrite("monitor_seconds", &FitOptions::monitor_seconds)
      .def("validate", &FitOptions::validate);

  py::class_<FitResult>(m, "FitResult")
      .def_readonly("phi", &FitResult::phi)
      .def_readonly("elbo", &FitResult::elbo)
      .def_readonly("elbo_step", &FitResult::elbo_step)
      .def_readonly("steps", &FitResult::steps)
      .def_readonly("converged", &FitResult::converged)
      .def_readonly("converged_step", &FitResult::converged_step)
      .def_readonly("averaged_steps", &FitResult::averaged_steps)
      .def_readonly("interrupted", &FitResult::interrupted)
      .def_readonly("skipped", &FitResult::skipped)
      .def_readonly("lr_reductions", &FitResult::lr_reductions)
      .def_readonly("divergences", &FitResult::divergences)
      .def_readonly("final_lr", &FitResult::final_lr)
      .def_readonly("message", &FitResult::message)
      .def_readonly("drifting", &FitResult::drifting)
      .def_readonly("growing", &FitResult::growing)
      .def_readonly("shrinking", &FitResult::shrinking)
      .def_readonly("log_sd", &FitResult::log_sd)
      .def_readonly("refinements", &FitResult::refinements)
      .def_readonly("error_mean", &FitResult::error_mean)
      .def_readonly("error_scale", &FitResult::error_scale)
      .def_readonly("full_evaluations", &FitResult::full_evaluations);

  m.def(
      "fit",
      [](Model& model, GaussianFamily& family, const Eigen::Ref<const Vector>& phi0, const FitOptions& options,
         const py::object& callback, const Preconditioner& preconditioner) {
        // A Python exception raised inside the monitor (other than Ctrl-C) stops the loop and is
        // re-raised here, once the GIL is ours again.
        std::unique_ptr<py::error_already_set> pending;
        Monitor monitor = [&](const Progress& p) {
          py::gil_scoped_acquire gil;
          if (PyErr_CheckSignals() != 0) {
            py::error_already_set err;
            if (err.matches(PyExc_KeyboardInterrupt)) return false;  // the result says "interrupted"
            pending = std::make_unique<py::error_already_set>(std::move(err));
            return false;
          }
          if (callback.is_none()) return true;
          try {
            py::object keep_going = callback(p.step, p.total, p.elbo, p.skipped);
            return keep_going.is_none() || keep_going.cast<bool>();
          } catch (py::error_already_set& err) {
            // Ctrl-C often lands while Python code (a progress bar) runs: same as above.
            if (!err.matches(PyExc_KeyboardInterrupt))
              pending = std::make_unique<py::error_already_set>(std::move(err));
            return false;
          }
        };
        Vector phi = phi0;
        FitResult result;
        {
          py::gil_scoped_release release;
          result = run_fit(model, family, phi, options, monitor, &preconditioner);
        }
        if (pending) throw std::move(*pending);
        return result;
      },
      py::arg("model"), py::arg("family"), py::arg("phi0"), py::arg("options"), py::arg("callback") = py::none(),
      py::arg("preconditioner") = Preconditioner());
}

}  // namespace fastvi::bindings
