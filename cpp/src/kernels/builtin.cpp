#include "builtin.hpp"

namespace fastvi {

void register_builtin_kernels(KernelRegistry& r) {
  kernels::register_normal(r);
  kernels::register_glm(r);
}

}  // namespace fastvi
