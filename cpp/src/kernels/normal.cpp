// normal(y | loc, scale) = -log(scale) - log(sqrt(2 pi)) - (y - loc)^2 / (2 scale^2)
#include <cmath>

#include "builtin.hpp"
#include "elementwise.hpp"
#include "fastvi/math.hpp"

namespace fastvi::kernels {
namespace {

double reciprocal(double x) { return 1.0 / x; }

class Normal final : public Kernel {
 public:
  Normal(std::vector<Operand> ops, Index size)
      : y_(std::move(ops[0])), loc_(std::move(ops[1])), scale_(std::move(ops[2])), size_(size),
        inv_scale_(map_data(scale_, reciprocal)) {
    // With a data scale, sum log(scale) once here instead of a log per element and draw.
    const_lp_ = -double(size_) * math::kHalfLog2Pi;
    if (!scale_.is_param) const_lp_ -= sum_data(size_, [&](Index n) { return std::log(data_at(scale_, n)); });
    whole_draw_ = size_ >= kMinWholeDraw && y_.whole_draw() && loc_.whole_draw() && scale_.whole_draw();
  }

  // The whole-draw path's columns of one draw: z, then 1 / scale for a parameter column.
  Index scratch_size(Index, int) const override { return whole_draw_ ? 2 * size_ : 0; }

  void evaluate(const Batch& b) const override {
    if (whole_draw_) return evaluate_whole_draws(b);
    const bool dy = y_.is_param, dloc = loc_.is_param, dscale = scale_.is_param;
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      for (Index n = 0; n < size_; ++n) {
        const double inv_sigma = mapped(scale_, inv_scale_, b, n, s, reciprocal);
        const double z = (y_.value(b, n, s) - loc_.value(b, n, s)) * inv_sigma;
        lp -= 0.5 * z * z;
        if (dy) y_.add_grad(b, n, s, -z * inv_sigma);
        if (dloc) loc_.add_grad(b, n, s, z * inv_sigma);
        if (dscale) {
          lp += std::log(inv_sigma);
          scale_.add_grad(b, n, s, (z * z - 1.0) * inv_sigma);
        }
      }
      b.lp[s] += lp;
    }
  }

 private:
  // The same, a draw at a time with Eigen arrays. Kept out of line: inlined into evaluate, its
  // vectorised code slowed the element loop there (eight schools ran 2 % slower per step).
  [[gnu::noinline]] void evaluate_whole_draws(const Batch& b) const {
    Eigen::Map<Eigen::ArrayXd> z(b.scratch, size_), inv(b.scratch + size_, size_);
    for (Index s = 0; s < b.draws; ++s) {
      double lp = const_lp_;
      // 1 / scale: one number for a scalar scale, else a column (the data table, or computed here).
      double inv_sigma = 0.0;
      if (scale_.is_scalar()) {
        inv_sigma = scale_.is_param ? 1.0 / scale_.scalar(b, s) : inv_scale_[0];
        if (scale_.is_param) lp += double(size_) * std::log(inv_sigma);
      } else if (scale_.is_param) {
        inv = scale_.column(b, s).inverse();
        lp += inv.log().sum();
      }
      with_draw(y_, b, s, size_, [&](const auto& y) {
        with_draw(loc_, b, s, size_, [&](const auto& loc) {
          if (scale_.is_scalar())
            lp += draw_terms(b, s, z, y, loc, Eigen::ArrayXd::Constant(size_, inv_sigma));
          else
            lp += draw_terms(b, s, z, y, loc, inv_column(inv));
        });
      });
      b.lp[s] += lp;
    }
  }

  // 1 / scale of the current draw for a scale that is not a scalar (set by evaluate_whole_draws).
  Eigen::Map<const Eigen::ArrayXd> inv_column(const Eigen::Map<Eigen::ArrayXd>& inv) const {
    return {scale_.is_param ? inv.data() : inv_scale_.data(), size_};
  }

  // Adds the gradients of draw s and returns -sum(z^2) / 2, z = (y - loc) / scale, for Eigen
  // arrays y, loc and inv_sigma = 1 / scale (columns or constants); z is scratch.
  template <class Y, class Loc, class InvSigma>
  double draw_terms(const Batch& b, Index s, Eigen::Map<Eigen::ArrayXd>& z, const Y& y, const Loc& loc,
                    const InvSigma& inv_sigma) const {
    z = (y - loc) * inv_sigma;
    if (y_.is_param) add_grad_draw(y_, b, s, -z * inv_sigma);
    if (loc_.is_param) add_grad_draw(loc_, b, s, z * inv_sigma);
    if (scale_.is_param) add_grad_draw(scale_, b, s, (z.square() - 1.0) * inv_sigma);
    return -0.5 * z.square().sum();
  }

  Operand y_, loc_, scale_;
  Index size_;
  Vector inv_scale_;       // 1 / scale for a data scale (empty for a parameter)
  double const_lp_ = 0.0;  // data-only terms, summed over the elements
  bool whole_draw_ = false;  // every operand contiguous or scalar (and enough elements): vectorised
};

}  // namespace

void register_normal(KernelRegistry& r) {
  r.add({"normal",
         "Normal(y | loc, scale)",
         {{"y", Support::Real, false, std::nullopt, "variate"},
          {"loc", Support::Real, false, 0.0, "mean"},
          {"scale", Support::Positive, false, 1.0, "standard deviation"}},
         true,
         [](std::vector<Operand> ops, Index size) { return std::make_unique<Normal>(std::move(ops), size); }});
}

}  // namespace fastvi::kernels
