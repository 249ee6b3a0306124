// Gaussian families: initialisation, moments, sampling and single ELBO-gradient estimates.
#include <pybind11/eigen.h>
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "fastvi/elbo.hpp"
#include "fastvi/rng.hpp"

namespace py = pybind11;

namespace fastvi::bindings {
namespace {

void check_phi(const GaussianFamily& f, const Eigen::Ref<const Vector>& phi) {
  if (phi.size() != f.num_params())
    throw std::invalid_argument("phi must have length " + std::to_string(f.num_params()) + " for the " + f.name() +
                                " family, got " + std::to_string(phi.size()));
}

}  // namespace

void bind_family(py::module_& m) {
  py::enum_<GradientEstimator>(m, "GradientEstimator")
      .value("stl", GradientEstimator::StickingTheLanding)
      .value("closed_form", GradientEstimator::ClosedFormEntropy);
  py::class_<GaussianFamily>(m, "Family")
      .def(py::init([](const std::string& name, Index dim, Index rank) { return make_family(name, dim, rank); }),
           py::arg("name"), py::arg("dim"), py::arg("rank") = 0,
           "A Gaussian family: 'meanfield', 'fullrank', or 'lowrank' with 1 <= rank <= dim.")
      .def_property_readonly("name", &GaussianFamily::name)
      .def_property_readonly("dim", &GaussianFamily::dim)
      .def_property_readonly("num_params", &GaussianFamily::num_params)
      .def_property_readonly("noise_dim", &GaussianFamily::noise_dim)
      .def_property_readonly("rank",
                             [](const GaussianFamily& self) -> py::object {
                               if (auto* lr = dynamic_cast<const LowRankGaussian*>(&self)) return py::int_(lr->rank());
                               return py::none();
                             })
      .def(
          "initialise",
          [](const GaussianFamily& self, const Eigen::Ref<const Vector>& mean, double scale) {
            if (mean.size() != self.dim())
              throw std::invalid_argument("mean must have length " + std::to_string(self.dim()));
            if (!(scale > 0) || !std::isfinite(scale))
              throw std::invalid_argument("init_scale must be a positive finite number");
            Vector phi(self.num_params());
            self.initialise(phi, mean, scale);
            return phi;
          },
          py::arg("mean"), py::arg("scale"))
      .def("mean",
           [](const GaussianFamily& self, const Eigen::Ref<const Vector>& phi) {
             check_phi(self, phi);
             return self.mean(phi);
           })
      .def("covariance",
           [](const GaussianFamily& self, const Eigen::Ref<const Vector>& phi) {
             check_phi(self, phi);
             return self.covariance(phi);
           })
      .def("entropy",
           [](const GaussianFamily& self, const Eigen::Ref<const Vector>& phi) {
             check_phi(self, phi);
             return self.entropy(phi);
           })
      .def(
          "sample",
          [](const GaussianFamily& self, const Eigen::Ref<const Vector>& phi, Index n, std::uint64_t seed, Index first,
             bool log_q) -> py::object {
            check_phi(self, phi);
            if (n < 1) throw std::invalid_argument("n must be >= 1");
            // Philox's column counter is 32 bits: draw j of a seed is column j.
            if (first < 0 || first + n > (Index(1) << 32))
              throw std::invalid_argument("draws first .. first + n - 1 must lie in [0, 2**32)");
            Matrix eps(self.noise_dim(), n), zeta(self.dim(), n);
            Vector lq(log_q ? n : 0);
            // A family keeps scratch for draw(): sample with a fresh one, so that threads sampling
            // from one approximation at once do not share it.
            auto family = self.clone();
            {
              py::gil_scoped_release release;
              fill_standard_normal(eps, seed, Stream::Sample, 0, first);
              family->reserve(n);
              family->draw(phi, eps, zeta);
              if (log_q) family->log_q(phi, eps, lq);
            }
            if (log_q) return py::make_tuple(std::move(zeta), std::move(lq));
            return py::cast(std::move(zeta));
          },
          py::arg("phi"), py::arg("n"), py::arg("seed"), py::arg("first") = 0, py::arg("log_q") = false,
          "Unconstrained draws first .. first + n - 1 of the stream for `seed` (D x n): the same draws\n"
          "however the stream is split into calls (bit for bit for meanfield and lowrank, to rounding for\n"
          "fullrank, whose blocked product rounds by batch width); with log_q=True, (draws, log q at each\n"
          "draw (n)).");

  m.def(
      "elbo_gradient",
      [](const Model& model, const GaussianFamily& family, const Eigen::Ref<const Vector>& phi, Index draws,
         std::uint64_t seed, std::uint64_t step, int threads, GradientEstimator gradient, Index batch_size,
         std::optional<Vector> reference) {
        check_phi(family, phi);
        if (reference && (!batch_size || reference->size() != family.dim()))
          throw py::value_error("reference: needs batch_size and a point of length " + std::to_string(family.dim()));
        auto own = family.clone();  // its own scratch (see sample)
        Vector grad(family.num_params());
        double elbo = kNaN;
        bool ok;
        {
          py::gil_scoped_release release;
          ElboEstimator est(model, *own, draws, gradient, nullptr, threads, batch_size, reference.has_value());
          ok = (!reference || !est.uses_control_variate() || est.set_reference(*reference, threads)) &&
               est.estimate(phi, seed, Stream::Evaluate, step, grad, elbo, threads);
        }
        if (!ok) grad.setConstant(kNaN);
        return py::make_tuple(ok ? elbo : kNaN, grad);
      },
      py::arg("model"), py::arg("family"), py::arg("phi"), py::arg("draws"), py::arg("seed"), py::arg("step"),
      py::arg("threads") = 1, py::arg("gradient") = GradientEstimator::StickingTheLanding, py::arg("batch_size") = 0,
      py::arg("reference") = py::none(),
      "One reparameterised estimate of the ELBO and its gradient with respect to phi (NaN if not finite);\n"
      "with batch_size and `reference` (an unconstrained point), the minibatch estimate with the\n"
      "control variate at that reference (see FitOptions.control_variate).");
}

}  // namespace fastvi::bindings
