// One bind_* function per concept; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace fastvi::bindings {

void bind_kernels(pybind11::module_& m);
void bind_model(pybind11::module_& m);
void bind_family(pybind11::module_& m);
void bind_fit(pybind11::module_& m);
void bind_custom_kernels(pybind11::module_& m);
void bind_blas(pybind11::module_& m);

}  // namespace fastvi::bindings
