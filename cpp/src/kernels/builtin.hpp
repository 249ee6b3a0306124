// Registration entry points of the built-in kernels, one per kernel file.
#pragma once

#include "fastvi/registry.hpp"

namespace fastvi::kernels {

void register_normal(KernelRegistry& r);
void register_glm(KernelRegistry& r);  // normal_id_glm, bernoulli_logit_glm, poisson_log_glm

}  // namespace fastvi::kernels
