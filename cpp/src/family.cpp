// The family base class and make_family; each family lives in its own file (meanfield.cpp, ...).
#include "fastvi/family.hpp"

#include <cmath>
#include <stdexcept>

#include "fastvi/math.hpp"

namespace fastvi {

double GaussianFamily::gaussian_entropy(double sum_log_diag) const {
  return double(dim_) * math::kHalfLog2PiE + sum_log_diag;
}

double GaussianFamily::entropy_estimate(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps) {
  const double half_sq = 0.5 * eps.squaredNorm() / double(eps.cols());
  return entropy(phi) - 0.5 * double(dim_) + half_sq;
}

void GaussianFamily::log_q(const Eigen::Ref<const Vector>& phi, const Eigen::Ref<const Matrix>& eps,
                           Eigen::Ref<Vector> out) const {
  const double constant = entropy(phi) - 0.5 * double(dim_);  // log det L + D/2 log(2 pi)
  for (Index s = 0; s < eps.cols(); ++s) out[s] = -constant - 0.5 * eps.col(s).squaredNorm();
}

std::unique_ptr<GaussianFamily> make_family(const std::string& name, Index dim, Index rank) {
  if (dim < 1) throw std::invalid_argument("the model has no parameters to fit");
  if (name != "meanfield" && name != "fullrank" && name != "lowrank")
    throw std::invalid_argument("family must be 'meanfield', 'fullrank' or 'lowrank', got '" + name + "'");
  if (name == "lowrank") return std::make_unique<LowRankGaussian>(dim, rank);
  if (rank != 0) throw std::invalid_argument("rank applies only to the lowrank family, not to '" + name + "'");
  if (name == "meanfield") return std::make_unique<MeanFieldGaussian>(dim);
  return std::make_unique<FullRankGaussian>(dim);
}

}  // namespace fastvi
