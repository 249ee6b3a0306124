// A C++ kernel for fastvi in its own extension module: importing fastvi_laplace registers
//
//   laplace(y | loc, scale) = -log(2 scale) - |y - loc| / scale
//
// with its partials written out by hand, Stan style (z = y - loc):
//   d/dy = -sign(z) / scale,   d/dloc = sign(z) / scale,   d/dscale = (|z| / scale - 1) / scale.
//
// The kernel contract is fastvi/kernel.hpp: operands arrive ordered as the KernelInfo's inputs,
// variate first, broadcast to `size` elements; a kernel adds each draw's log density to b.lp[s]
// and its partials (for parameter operands only) with add_grad, and allocates nothing.
#include <fastvi/extension.hpp>

#include <cmath>
#include <memory>
#include <utility>
#include <vector>

namespace {

using fastvi::Batch;
using fastvi::Index;
using fastvi::Operand;

class Laplace final : public fastvi::Kernel {
 public:
  Laplace(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), loc_(std::move(ops[1])), scale_(std::move(ops[2])), size_(size) {}

  void evaluate(const Batch& b) const override {
    const bool dy = y_.is_param, dloc = loc_.is_param, dscale = scale_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = 0.0;
      for (Index n = 0; n < size_; ++n) {
        const double scale = scale_.value(b, n, s);
        const double inv_scale = 1.0 / scale;
        const double z = y_.value(b, n, s) - loc_.value(b, n, s);
        const double abs_z = std::abs(z);
        lp -= std::log(2.0 * scale) + abs_z * inv_scale;
        const double sign = double((z > 0) - (z < 0));
        if (dy) y_.add_grad(b, n, s, -sign * inv_scale);
        if (dloc) loc_.add_grad(b, n, s, sign * inv_scale);
        if (dscale) scale_.add_grad(b, n, s, (abs_z * inv_scale - 1.0) * inv_scale);
      }
      b.lp[s] += lp;
    }
  }

 private:
  Operand y_, loc_, scale_;
  Index size_;
};

}  // namespace

PYBIND11_MODULE(fastvi_laplace, m) {
  m.doc() = "A Laplace kernel for fastvi, in C++: import this module, then use Model.add(\"laplace\", ...)";
  using fastvi::Support;
  fastvi::extension::register_kernel({
      "laplace",
      "Laplace(y | loc, scale), from the fastvi_laplace extension",
      {{"y", Support::Real, false, std::nullopt, "variate"},
       {"loc", Support::Real, false, 0.0, "location"},
       {"scale", Support::Positive, false, 1.0, "scale (> 0)"}},
      true,  // element-wise: fastvi broadcasts the inputs together
      [](std::vector<Operand> ops, Index size) { return std::make_unique<Laplace>(std::move(ops), size); },
  });
  m.attr("kernels") = pybind11::make_tuple("laplace");
}
