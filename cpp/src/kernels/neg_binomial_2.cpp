// neg_binomial_2(y | mu, phi) for integer y >= 0, mean mu and variance mu + mu^2 / phi (Stan's):
//   log p = lgamma(y + phi) - lgamma(phi) - lgamma(y + 1) + y log(mu / (mu + phi))
//           + phi log(phi / (mu + phi))
//         = R(phi, y) + y log(mu) - (y + phi) log1p(mu / phi) - lgamma(y + 1),
// with R(phi, y) = log(Gamma(phi + y) / (Gamma(phi) phi^y)) (special::LogRisingOverPower), which
// tends to 0 as phi grows: no term cancels, and phi -> infinity is the Poisson limit
// (y log(mu) - mu - lgamma(y + 1)) to rounding, where the textbook form loses lgamma(phi) ~ phi log phi.
//   d/dmu  = y / mu - (y + phi) / (mu + phi) = phi (y - mu) / (mu (mu + phi))
//   d/dphi = digamma(y + phi) - digamma(phi) - log1p(mu / phi) + (mu - y) / (mu + phi)
//
// neg_binomial_2_log(y | log_mu, phi): the same with mu = exp(log_mu), written in
// d = log_mu - log(phi) so that huge log_mu cannot overflow:
//   log p = R(phi, y) + y log_mu - (y + phi) log1p_exp(d) - lgamma(y + 1)
//   d/dlog_mu = y - (y + phi) inv_logit(d)
//   d/dphi    = digamma(y + phi) - digamma(phi) - log1p_exp(d) + inv_logit(d) - (y / phi) inv_logit(-d)
#include "builtin.hpp"
#include "fastvi/elementwise.hpp"
#include "special.hpp"

namespace fastvi::kernels {
namespace {
using namespace elementwise;

struct NegBinomial2 {
  static constexpr const char* name = "neg_binomial_2";
  static constexpr const char* doc = "NegativeBinomial(y | mu, phi): mean mu, variance mu + mu^2 / phi, integer y >= 0";
  static constexpr Input inputs[] = {
      {"y", Support::Count, true, std::nullopt, "count"},
      {"mu", Support::Positive, false, std::nullopt, "mean"},
      {"phi", Support::Positive, false, std::nullopt, "precision (inverse overdispersion)"}};
  enum { kY, kMu, kPhi };
  using Derived = Derive<Of<kMu, Log>>;

  template <class Out, class Y, class Mu, class Phi, class LogMu>
  static void log_density(Out& out, const Y& y, const Mu& mu, const Phi& phi, const LogMu& log_mu) {
    if (auto lp = out.term(kY)) lp -= log_gamma(y + 1.0);
    if (auto lp = out.term(kPhi)) lp += special::map<special::LogRisingOverPower>(phi, y);
    if (auto lp = out.term(kMu)) lp += y * log_mu;
    const auto log1p_ratio = out.keep(log1p(mu / phi));
    out.lp(-(y + phi) * log1p_ratio);
    out.grad(kMu, phi * (y - mu) / (mu * (mu + phi)));
    if (out.param(kPhi))
      out.grad(kPhi, special::map<special::DigammaDifference>(phi, y) - log1p_ratio + (mu - y) / (mu + phi));
  }
};

struct NegBinomial2Log {
  static constexpr const char* name = "neg_binomial_2_log";
  static constexpr const char* doc =
      "NegativeBinomial(y | exp(log_mu), phi): mean exp(log_mu), variance mu + mu^2 / phi, integer y >= 0";
  static constexpr Input inputs[] = {
      {"y", Support::Count, true, std::nullopt, "count"},
      {"log_mu", Support::Real, false, std::nullopt, "log of the mean"},
      {"phi", Support::Positive, false, std::nullopt, "precision (inverse overdispersion)"}};
  enum { kY, kLogMu, kPhi };
  using Derived = Derive<Of<kPhi, Log>>;

  template <class Out, class Y, class LogMu, class Phi, class LogPhi>
  static void log_density(Out& out, const Y& y, const LogMu& eta, const Phi& phi, const LogPhi& log_phi) {
    if (auto lp = out.term(kY)) lp -= log_gamma(y + 1.0);
    if (auto lp = out.term(kPhi)) lp += special::map<special::LogRisingOverPower>(phi, y);
    if (auto lp = out.term(kLogMu)) lp += y * eta;
    const auto d = out.keep(eta - log_phi);
    const auto softplus = out.keep(log1p_exp(d));
    out.lp(-(y + phi) * softplus);
    const auto p = out.keep(inv_logit(d));  // mu / (mu + phi)
    out.grad(kLogMu, y - (y + phi) * p);
    if (out.param(kPhi))
      out.grad(kPhi, special::map<special::DigammaDifference>(phi, y) - softplus + p - y / phi * inv_logit(-d));
  }
};

}  // namespace

void register_neg_binomial_2(KernelRegistry& r) {
  register_elementwise<NegBinomial2>(r);
  register_elementwise<NegBinomial2Log>(r);
}

}  // namespace fastvi::kernels
