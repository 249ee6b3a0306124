#include "fastvi/precondition.hpp"

#include <stdexcept>
#include <string>

#include "fastvi/triangular.hpp"

namespace fastvi {

void Preconditioner::validate(Index dim) const {
  if (!active()) return;
  auto fail = [](const std::string& what) { throw std::invalid_argument("preconditioner: " + what); };
  if (shift.size() != dim) fail("shift must have length " + std::to_string(dim));
  if (is_diagonal() == (lower.size() > 0)) fail("give exactly one of a diagonal and a lower-triangular scale");
  if (!shift.allFinite()) fail("shift must be finite");
  const Vector d = is_diagonal() ? diagonal : Vector(lower.diagonal());
  if (d.size() != dim || (!is_diagonal() && lower.cols() != dim)) fail("scale has the wrong size");
  if (!d.allFinite() || (d.array() <= 0).any() || (!is_diagonal() && !lower.allFinite()))
    fail("scale must be finite with a positive diagonal");
}

// A dense C goes through the blocked triangular products (triangular.hpp), which never allocate.
void Preconditioner::apply(const Eigen::Ref<const Matrix>& u, Eigen::Ref<Matrix> zeta) const {
  if (is_diagonal())
    zeta.noalias() = diagonal.asDiagonal() * u;
  else
    lower_times(lower, u, zeta);
  zeta.colwise() += shift;
}

void Preconditioner::pull_back(const Eigen::Ref<const Matrix>& g_zeta, Eigen::Ref<Matrix> g_u) const {
  if (is_diagonal())
    g_u.noalias() = diagonal.asDiagonal() * g_zeta;
  else
    lower_transpose_times(lower, g_zeta, g_u);
}

}  // namespace fastvi
