// The private extension module fastvi._core. Python code wraps it in python/fastvi/.
#include <omp.h>

#include "bindings.hpp"
#include "fastvi/parallel.hpp"

// FASTVI_MODULE_NAME: _core, or _core_x86_64_v3 etc. for a build for one x86-64 level (CMake's
// FASTVI_ISA_VARIANTS), which fastvi/_isa.py loads in _core's place.
#ifndef FASTVI_MODULE_NAME
#define FASTVI_MODULE_NAME _core
#endif

PYBIND11_MODULE(FASTVI_MODULE_NAME, m) {
  // Every build goes by _core's name, so that its classes' __module__ (reprs, pickles) is the same
  // whichever build a process loaded.
  m.attr("__name__") = "fastvi._core";
  m.doc() = "fastvi's C++ engine (private: use the fastvi package)";
  m.def(
      "max_threads", [] { return omp_get_max_threads(); },
      "Threads OpenMP would use by default (OMP_NUM_THREADS or the number of cores).");
  m.def("forked_serial", &fastvi::forked_after_parallel_team,
        "True in a process forked after fastvi ran OpenMP threads: kernels run on one thread there.");
  fastvi::bindings::bind_kernels(m);
  fastvi::bindings::bind_model(m);
  fastvi::bindings::bind_family(m);
  fastvi::bindings::bind_fit(m);
  fastvi::bindings::bind_custom_kernels(m);
  fastvi::bindings::bind_blas(m);
}
