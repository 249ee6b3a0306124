#include "builtin.hpp"

namespace fastvi {

void register_builtin_kernels(KernelRegistry& r) {
  kernels::register_normal(r);
  // Element-wise distributions.
  kernels::register_student_t(r);
  kernels::register_cauchy(r);
  kernels::register_half_normal(r);
  kernels::register_half_cauchy(r);
  kernels::register_exponential(r);
  kernels::register_gamma(r);
  kernels::register_lognormal(r);
  kernels::register_beta(r);
  kernels::register_bernoulli_logit(r);
  kernels::register_binomial_logit(r);
  kernels::register_poisson_log(r);
  kernels::register_poisson(r);
  kernels::register_neg_binomial_2(r);
  kernels::register_beta_binomial(r);
  kernels::register_weibull(r);
  kernels::register_logistic(r);
  kernels::register_double_exponential(r);
  kernels::register_inv_gamma(r);
  kernels::register_chi_square(r);
  kernels::register_pareto(r);
  kernels::register_uniform(r);
  kernels::register_skew_normal(r);
  kernels::register_von_mises(r);
  // Censoring companions (log CDF and log survival function).
  kernels::register_normal_cdf(r);
  kernels::register_lognormal_cdf(r);
  kernels::register_exponential_cdf(r);
  kernels::register_gamma_cdf(r);
  // Categorical and ordinal outcomes (the categories on an axis of their own).
  kernels::register_categorical(r);
  kernels::register_ordered_logistic(r);
  kernels::register_ordered_probit(r);
  kernels::register_multinomial_logit(r);
  // Multivariate distributions.
  kernels::register_dirichlet(r);
  kernels::register_multi_normal_cholesky(r);
  kernels::register_multi_normal(r);
  kernels::register_lkj_corr_cholesky(r);
  // Fused GLM likelihoods.
  kernels::register_glm(r);
  kernels::register_categorical_logit_glm(r);
}

}  // namespace fastvi
