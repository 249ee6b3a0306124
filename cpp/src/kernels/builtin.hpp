// Registration entry points of the built-in kernels, one per kernel file.
#pragma once

#include "fastvi/registry.hpp"

namespace fastvi::kernels {

void register_normal(KernelRegistry& r);

}  // namespace fastvi::kernels
