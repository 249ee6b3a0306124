// A C++ kernel for fastvi in its own extension module: importing fastvi_laplace registers
//
//   laplace(y | loc, scale) = -log(2 scale) - |y - loc| / scale
//
// with its partials written out by hand, Stan style (z = y - loc):
//   d/dy = -sign(z) / scale,   d/dloc = sign(z) / scale,   d/dscale = (|z| / scale - 1) / scale.
//
// The distribution is written for fastvi's element-wise kernel driver (fastvi/elementwise.hpp):
// its input table and one log_density function over doubles or Eigen arrays. The driver makes a
// fastvi::Kernel of it (fastvi/kernel.hpp): operand layouts and broadcasting, the loops over draws
// and elements, the vectorised path, the terms of data only (summed once), and partials only for
// the inputs that are parameters.
#include <fastvi/elementwise.hpp>
#include <fastvi/extension.hpp>

namespace {

namespace ew = fastvi::elementwise;  // its maths take doubles and Eigen arrays alike
using fastvi::Support;

struct Laplace {
  static constexpr const char* name = "laplace";
  static constexpr const char* doc = "Laplace(y | loc, scale), from the fastvi_laplace extension";
  static constexpr ew::Input inputs[] = {{"y", Support::Real, false, std::nullopt, "variate"},
                                         {"loc", Support::Real, false, 0.0, "location"},
                                         {"scale", Support::Positive, false, 1.0, "scale (> 0)"}};
  enum { kY, kLoc, kScale };
  // 1 / scale, computed once when the scale is data.
  using Derived = ew::Derive<ew::Of<kScale, ew::Inverse>>;

  template <class Out, class Y, class Loc, class Scale, class InvScale>
  static void log_density(Out& out, const Y& y, const Loc& loc, const Scale& scale, const InvScale& inv) {
    const auto z = out.keep(y - loc);
    out.lp(-ew::abs(z) * inv);                                   // depends on every input
    if (auto lp = out.term(kScale)) lp -= ew::log(2.0 * scale);  // on the scale only
    out.grad(kY, -ew::sign(z) * inv);
    out.grad(kLoc, ew::sign(z) * inv);
    out.grad(kScale, (ew::abs(z) * inv - 1.0) * inv);
  }
};

}  // namespace

PYBIND11_MODULE(fastvi_laplace, m) {
  m.doc() = "A Laplace kernel for fastvi, in C++: import this module, then use Model.add(\"laplace\", ...)";
  fastvi::extension::register_kernel(fastvi::elementwise_kernel_info<Laplace>());
  m.attr("kernels") = pybind11::make_tuple("laplace");
}
