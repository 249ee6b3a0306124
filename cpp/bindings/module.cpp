// The private extension module fastvi._core. Python code wraps it in python/fastvi/.
#include <omp.h>

#include "bindings.hpp"
#include "fastvi/parallel.hpp"

PYBIND11_MODULE(_core, m) {
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
}
