// Registration entry points of the built-in kernels, one per kernel file.
#pragma once

#include "fastvi/registry.hpp"

namespace fastvi::kernels {

void register_normal(KernelRegistry& r);
void register_student_t(KernelRegistry& r);
void register_cauchy(KernelRegistry& r);
void register_half_normal(KernelRegistry& r);
void register_half_cauchy(KernelRegistry& r);
void register_exponential(KernelRegistry& r);
void register_gamma(KernelRegistry& r);
void register_lognormal(KernelRegistry& r);
void register_beta(KernelRegistry& r);
void register_bernoulli_logit(KernelRegistry& r);
void register_binomial_logit(KernelRegistry& r);
void register_poisson_log(KernelRegistry& r);
void register_poisson(KernelRegistry& r);
void register_neg_binomial_2(KernelRegistry& r);  // neg_binomial_2, neg_binomial_2_log
void register_beta_binomial(KernelRegistry& r);
void register_weibull(KernelRegistry& r);  // weibull, weibull_lccdf, weibull_lcdf
void register_logistic(KernelRegistry& r);
void register_double_exponential(KernelRegistry& r);
void register_inv_gamma(KernelRegistry& r);
void register_chi_square(KernelRegistry& r);
void register_pareto(KernelRegistry& r);
void register_uniform(KernelRegistry& r);
void register_skew_normal(KernelRegistry& r);
void register_von_mises(KernelRegistry& r);
void register_normal_cdf(KernelRegistry& r);       // normal_lcdf, normal_lccdf
void register_lognormal_cdf(KernelRegistry& r);    // lognormal_lcdf, lognormal_lccdf
void register_exponential_cdf(KernelRegistry& r);  // exponential_lcdf, exponential_lccdf
void register_gamma_cdf(KernelRegistry& r);        // gamma_lcdf, gamma_lccdf
void register_categorical(KernelRegistry& r);      // categorical_logit, categorical
void register_ordered_logistic(KernelRegistry& r);
void register_ordered_probit(KernelRegistry& r);
void register_multinomial_logit(KernelRegistry& r);
void register_dirichlet(KernelRegistry& r);
void register_multi_normal_cholesky(KernelRegistry& r);
void register_multi_normal(KernelRegistry& r);
void register_lkj_corr_cholesky(KernelRegistry& r);
void register_glm(KernelRegistry& r);  // normal_id_glm, bernoulli_logit_glm, poisson_log_glm, neg_binomial_2_log_glm
void register_categorical_logit_glm(KernelRegistry& r);

}  // namespace fastvi::kernels
