// Tuning knobs of the GLM kernels, for the benchmarks that measure them (bench/cpp's threshold
// sweep and row-kernel crossover); the library itself never changes them. Not part of the
// installed API. Set them before any fit runs: a kernel reads them at every evaluation.
#pragma once

#include "fastvi/types.hpp"

namespace fastvi::kernels::glm_tuning {

// Multiply-adds per evaluation below which a GLM kernel stays on one thread (default 1e6).
void set_parallel_work(double work);
// Draws up to which the single-pass row kernel runs, for every K (default: glm_rows::max_draws(K));
// a negative value restores the default.
void set_fused_max_draws(Index draws);

}  // namespace fastvi::kernels::glm_tuning
