// The external BLAS for the GLM kernels' GEMM-shaped products (fastvi/blas.hpp): fastvi/_blas.py
// passes the address of scipy.linalg.cython_blas's dgemm here.
#include <cstdint>

#include "bindings.hpp"
#include "fastvi/blas.hpp"

namespace py = pybind11;

namespace fastvi::bindings {

void bind_blas(py::module_& m) {
  m.def(
      "set_dgemm", [](std::uintptr_t address) { blas::set_dgemm(reinterpret_cast<blas::Dgemm>(address)); },
      py::arg("address"),
      "Kernels built from now on compute their GEMM-shaped blocks with the Fortran-interface (LP64) dgemm at "
      "this address; 0: Eigen's products.");
  m.def(
      "dgemm_address", [] { return reinterpret_cast<std::uintptr_t>(blas::current_dgemm()); },
      "The address set_dgemm last set (0: Eigen's products).");
}

}  // namespace fastvi::bindings
