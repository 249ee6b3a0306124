#include "convergence.hpp"

#include <algorithm>
#include <cmath>

namespace fastvi::convergence {

// Median of the first n elements of x (reordered in place).
double median_of_first(std::vector<double>& x, size_t n) {
  const size_t h = n / 2;
  std::nth_element(x.begin(), x.begin() + std::ptrdiff_t(h), x.begin() + std::ptrdiff_t(n));
  const double upper = x[h];
  if (n % 2) return upper;
  return 0.5 * (upper + *std::max_element(x.begin(), x.begin() + std::ptrdiff_t(h)));
}

ElboCheck check_elbo(const std::vector<double>& elbo, const std::vector<double>& elbo_var, const FitOptions& opt,
                     std::vector<double>& scratch) {
  const size_t n = elbo.size(), b = size_t(opt.block), m = 2 * b;
  ElboCheck c;
  c.checked = true;
  double recent = 0.0, before = 0.0;
  for (size_t i = 0; i < b; ++i) {
    recent += elbo[n - 1 - i];
    before += elbo[n - 1 - b - i];
  }
  recent /= double(b);
  before /= double(b);
  c.diff = recent - before;
  c.improvement = std::max(recent - elbo.front(), 0.0);
  const size_t back = size_t(kLongBlocks) * b;
  if (n >= back + b) {
    double old = 0.0;
    for (size_t i = 0; i < b; ++i) old += elbo[n - 1 - back - i];
    c.diff_long = recent - old / double(b);
  }
  // Two estimates of the noise, each inflated by a trend in its own way, so the smaller is used:
  // (1) the windows' scatter around a straight line through the last 2b windows (a steady climb
  // is the line's slope, not noise; a curved one inflates it): with s^2 the residual variance of
  // one window, a difference of two means of b windows has variance 2 s^2 / b; (2) the scatter of
  // the single-step estimates within each window (a climb within a window inflates it).
  if (m > 2) {
    const double mid = 0.5 * double(m - 1);
    double mean = 0.0, sxx = 0.0, sxy = 0.0;
    for (size_t i = 0; i < m; ++i) mean += elbo[n - m + i];
    mean /= double(m);
    for (size_t i = 0; i < m; ++i) {
      const double x = double(i) - mid;
      sxx += x * x;
      sxy += x * (elbo[n - m + i] - mean);
    }
    const double slope = sxy / sxx;
    double rss = 0.0;
    for (size_t i = 0; i < m; ++i) {
      const double r = elbo[n - m + i] - mean - slope * (double(i) - mid);
      rss += r * r;
    }
    c.se_line = std::sqrt(rss / double(m - 2) * 2.0 / double(b));
    // The robust scale of one window: 1.4826 MAD of the residuals around the line.
    for (size_t i = 0; i < m; ++i) scratch[i] = std::abs(elbo[n - m + i] - mean - slope * (double(i) - mid));
    c.window_scale = 1.4826 * median_of_first(scratch, m);
  }
  double v = 0.0;
  for (size_t i = 0; i < m; ++i) v += elbo_var[n - m + i];
  c.se_within = std::sqrt(v) / double(b);
  c.se = m > 2 ? std::min(c.se_line, c.se_within) : c.se_within;
  c.rate = std::max(opt.tol_abs, opt.tol * c.improvement);
  const double noise = opt.noise_z * c.se;
  c.settled = std::abs(c.diff) < std::max(c.rate, noise) &&
              std::abs(c.diff_long) < std::max(double(kLongBlocks) * c.rate, noise);
  // The same test on block medians with a noise from the windows' MAD: when q is off in the tails
  // (k-hat ~0.7), single-step ELBOs are heavy-tailed, one outlying window moves a block mean by
  // several of its estimated standard errors, and the mean test alone never passed (an 89-parameter
  // varying-intercepts fit, full-rank: block medians flat to +-0.3 nats for 20,000 steps while the
  // block means kept "changing" by 1.6 nats against a noise of 0.29). A climb moves the medians as
  // it moves the means, so either test passing means flat. The sd of a median of b windows is about
  // 1.2533 sd / sqrt(b).
  if (m > 2 && n >= 2 * b) {
    const auto block_median = [&](size_t end) {  // median of the b windows before index `end`
      std::copy(elbo.begin() + std::ptrdiff_t(end - b), elbo.begin() + std::ptrdiff_t(end), scratch.begin());
      return median_of_first(scratch, b);
    };
    const double med_recent = block_median(n), med_before = block_median(n - b);
    const double med_old = n >= back + b ? block_median(n - back) : med_recent;
    const double robust_noise = opt.noise_z * 1.2533 * c.window_scale * std::sqrt(2.0 / double(b));
    c.settled_median = std::abs(med_recent - med_before) < std::max(c.rate, robust_noise) &&
                       std::abs(med_recent - med_old) < std::max(double(kLongBlocks) * c.rate, robust_noise);
    c.settled = c.settled || c.settled_median;
  }
  return c;
}

// Whether the averaging phase confirms convergence; if not, says why.
bool confirm(const TailTrend& trend, const FitOptions& opt, std::string& why) {
  std::vector<Index> mean, scale;
  trend.moving(kTailMeanLimit * opt.max_drift, kTailScaleLimit, kTailZ, mean, scale);
  if (mean.empty() && scale.empty()) return true;
  why = "after an apparent convergence, q's " +
        std::string(mean.empty()    ? "scale"
                    : scale.empty() ? "mean"
                                    : "mean and scale") +
        " kept moving along " + std::to_string(std::max(mean.size(), scale.size())) + " coordinate(s) over the " +
        std::to_string(trend.blocks() * opt.block * opt.eval_every) + " steps of averaging";
  return false;
}

}  // namespace fastvi::convergence
