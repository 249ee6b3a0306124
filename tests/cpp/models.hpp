// Models shared by the benchmarks and the allocation check, built through the C++ API the way the
// Python bindings build them (cpp/bindings/bind_model.cpp).
#pragma once

#include <cmath>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "fastvi/model.hpp"
#include "fastvi/registry.hpp"

namespace fastvi::bench {

inline Operand data_operand(const std::string& name, std::vector<Index> shape, const Vector& values) {
  Operand op;
  op.name = name;
  op.source = "data";
  op.shape = std::move(shape);
  op.data = values;
  return op;
}

inline Operand scalar_operand(const std::string& name, double value) {
  return data_operand(name, {}, Vector::Constant(1, value));
}

inline Operand param_operand(const std::string& name, const Model& model, const std::string& param) {
  const ParamBlock& p = model.param(param);
  Operand op;
  op.name = name;
  op.source = param;
  op.is_param = true;
  op.shape = p.shape;
  op.row = p.row;  // its first value row (p.offset is its first coordinate in zeta)
  op.lower = p.transform.lower;
  op.upper = p.transform.upper;
  return op;
}

// The seed model: w ~ normal(0, 1), x_i ~ normal(w, 1) for 100 observations.
inline void build_seed_model(Model& m) {
  std::mt19937_64 rng(42);
  std::normal_distribution<double> normal(2.0, 1.0);
  Vector x(100);
  for (Index i = 0; i < x.size(); ++i) x[i] = normal(rng);
  m.add_param("w", {}, -kInf, kInf);
  m.add_factor("normal", {param_operand("y", m, "w"), scalar_operand("loc", 0.0), scalar_operand("scale", 1.0)},
               "prior");
  m.add_factor("normal", {data_operand("y", {100}, x), param_operand("loc", m, "w"), scalar_operand("scale", 1.0)},
               "likelihood");
}

// A simple Gaussian target for the full-rank benchmarks: z (D) with z_i ~ normal(0, 1).
inline void build_gaussian_target(Model& m, Index d) {
  m.add_param("z", {d}, -kInf, kInf);
  m.add_factor("normal", {param_operand("y", m, "z"), scalar_operand("loc", 0.0), scalar_operand("scale", 1.0)},
               "target");
}

// Simulated design matrix X (N x K, row-major values, entries ~ N(0, 1/K)) and outcome y for one
// of the GLM kernels, from coefficients ~ N(0, 1) and intercept 0.3.
inline void simulate_glm(const std::string& kernel, Index n, Index k, std::uint64_t seed, Vector& x, Vector& y) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  Vector beta(k);
  for (Index j = 0; j < k; ++j) beta[j] = normal(rng);
  x.resize(n * k);
  y.resize(n);
  const double scale = 1.0 / std::sqrt(double(k));
  for (Index i = 0; i < n; ++i) {
    double eta = 0.3;
    for (Index j = 0; j < k; ++j) {
      x[i * k + j] = scale * normal(rng);
      eta += x[i * k + j] * beta[j];
    }
    if (kernel == "normal_id_glm") {
      y[i] = eta + normal(rng);
    } else if (kernel == "bernoulli_logit_glm") {
      y[i] = uniform(rng) < 1.0 / (1.0 + std::exp(-eta)) ? 1.0 : 0.0;
    } else {
      y[i] = double(std::poisson_distribution<int>(std::exp(eta))(rng));
    }
  }
}

// A GLM model: alpha (scalar) and beta (K) parameters, or beta given as data (alpha stays a
// parameter); sigma a parameter (lower 0), the input scale, for normal_id_glm.
// x_float32: X read in place as float32 (as fastvi reads a float32 numpy array), rounded from
// the simulated doubles.
inline void build_glm_model(Model& m, const std::string& kernel, Index n, Index k, bool beta_param = true,
                            std::uint64_t seed = 1, bool x_float32 = false) {
  Vector x, y;
  simulate_glm(kernel, n, k, seed, x, y);
  m.add_param("alpha", {}, -kInf, kInf);
  std::vector<Operand> ops = {data_operand("y", {n}, y), data_operand("X", {n, k}, x),
                              param_operand("alpha", m, "alpha")};
  if (x_float32) {
    auto values = std::make_shared<std::vector<float>>(x.data(), x.data() + x.size());
    ops[1].data = Vector();
    ops[1].view = values->data();
    ops[1].view_is_float32 = true;
    ops[1].view_owner = values;
  }
  if (beta_param) {
    m.add_param("beta", {k}, -kInf, kInf);
    ops.push_back(param_operand("beta", m, "beta"));
  } else {
    ops.push_back(data_operand("beta", {k}, Vector::Constant(k, 0.1)));
  }
  if (kernel == "normal_id_glm") {
    m.add_param("sigma", {}, 0.0, kInf);
    ops.push_back(param_operand("scale", m, "sigma"));
  }
  if (kernel == "neg_binomial_2_log_glm") {  // on the Poisson counts simulate_glm gives it
    m.add_param("phi", {}, 0.0, kInf);
    ops.push_back(param_operand("phi", m, "phi"));
  }
  m.add_factor(kernel, std::move(ops), kernel);
}

// categorical_logit_glm: y in {0..C-1} from a simulated multi-logit regression, X (N x K), alpha
// (C,) and beta (K x C) parameters (or beta as data).
inline void build_categorical_glm_model(Model& m, Index n, Index k, Index c, bool beta_param = true,
                                        std::uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  Vector beta(k * c), x(n * k), y(n), logits(c);
  for (Index j = 0; j < beta.size(); ++j) beta[j] = normal(rng);
  const double scale = 1.0 / std::sqrt(double(k));
  for (Index i = 0; i < n; ++i) {
    for (Index j = 0; j < k; ++j) x[i * k + j] = scale * normal(rng);
    double total = 0.0;
    for (Index cc = 0; cc < c; ++cc) {
      logits[cc] = 0.0;
      for (Index j = 0; j < k; ++j) logits[cc] += x[i * k + j] * beta[j * c + cc];
      total += logits[cc] = std::exp(logits[cc]);
    }
    double u = uniform(rng) * total;
    Index cat = 0;
    while (cat + 1 < c && u > logits[cat]) u -= logits[cat++];
    y[i] = double(cat);
  }
  m.add_param("alpha", {c}, -kInf, kInf);
  std::vector<Operand> ops = {data_operand("y", {n}, y), data_operand("X", {n, k}, x),
                              param_operand("alpha", m, "alpha")};
  if (beta_param) {
    m.add_param("beta", {k, c}, -kInf, kInf);
    ops.push_back(param_operand("beta", m, "beta"));
  } else {
    ops.push_back(data_operand("beta", {k, c}, Vector::Constant(k * c, 0.1)));
  }
  m.add_factor("categorical_logit_glm", std::move(ops), "categorical_logit_glm");
}

// Every registered element-wise kernel (the GLM kernels are not element-wise).
inline std::vector<std::string> elementwise_kernels() {
  std::vector<std::string> out;
  for (const std::string& name : KernelRegistry::global().names())
    if (KernelRegistry::global().get(name).elementwise) out.push_back(name);
  return out;
}

// Data for an input of the given support: values well inside it. A count input that is not the
// variate (binomial's trials) is 6..11, above any variate count (0..5).
inline Vector sample_support(Support support, bool variate, Index n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  Vector v(n);
  for (Index i = 0; i < n; ++i) {
    switch (support) {
      case Support::Real:
        v[i] = normal(rng);
        break;
      case Support::Positive:
        v[i] = 0.5 + 2.0 * u(rng);
        break;
      case Support::NonNegative:
        v[i] = 2.0 * u(rng);
        break;
      case Support::UnitInterval:
        v[i] = 0.05 + 0.9 * u(rng);
        break;
      case Support::Binary:
        v[i] = u(rng) < 0.5 ? 0.0 : 1.0;
        break;
      case Support::Count:
        v[i] = std::floor(6.0 * u(rng)) + (variate ? 0.0 : 6.0);
        break;
    }
  }
  return v;
}

// An element-wise kernel as a likelihood: its variate is data of shape `shape` (N elements), every
// other input that can be a parameter is one (bounded to its support), of shape `param_shape`:
// {} for scalar parameters, `shape` for vector ones, or a shape that broadcasts against it. Data-
// only inputs other than the variate are data of shape `shape`.
// rows_axis: the factor's rows axis (Model.add's rows=), for minibatches.
inline void build_elementwise_likelihood(Model& m, const std::string& kernel, const std::vector<Index>& shape,
                                         const std::vector<Index>& param_shape, std::uint64_t seed = 5,
                                         std::optional<Index> rows_axis = std::nullopt) {
  const KernelInfo info = KernelRegistry::global().get(kernel);
  std::mt19937_64 rng(seed);
  Index n = 1;
  for (Index d : shape) n *= d;
  std::vector<Operand> ops;
  for (size_t i = 0; i < info.inputs.size(); ++i) {
    const InputInfo& in = info.inputs[i];
    if (i == 0 || in.data_only) {
      ops.push_back(data_operand(in.name, shape, sample_support(in.support, i == 0, n, rng)));
      continue;
    }
    double lower = in.support == Support::Real ? -kInf : 0.0;
    double upper = in.support == Support::UnitInterval ? 1.0 : kInf;
    // Inputs coupled to the variate: bounds that keep every draw inside the support, given y's
    // data (pareto: y >= 0.5 >= y_min; uniform: lower <= -10 < y < 10 <= upper).
    if (kernel == "pareto" && in.name == "y_min") upper = 0.5;
    if (kernel == "uniform" && in.name == "lower") upper = -10.0;
    if (kernel == "uniform" && in.name == "upper") lower = 10.0;
    m.add_param("p_" + in.name, param_shape, lower, upper);
    ops.push_back(param_operand(in.name, m, "p_" + in.name));
  }
  m.add_factor(kernel, std::move(ops), kernel, rows_axis);
}

// An element-wise kernel as a prior: its variate a parameter of shape `shape` (bounded to its
// support), every other input scalar data. False (and nothing added) if the variate is data-only.
inline bool build_elementwise_prior(Model& m, const std::string& kernel, const std::vector<Index>& shape,
                                    std::uint64_t seed = 5) {
  const KernelInfo info = KernelRegistry::global().get(kernel);
  if (info.inputs[0].data_only) return false;
  std::mt19937_64 rng(seed);
  const InputInfo& y = info.inputs[0];
  double lower = y.support == Support::Real ? -kInf : 0.0;
  double upper = y.support == Support::UnitInterval ? 1.0 : kInf;
  std::vector<Vector> data;
  for (size_t i = 1; i < info.inputs.size(); ++i) data.push_back(sample_support(info.inputs[i].support, false, 1, rng));
  // Variates whose support depends on other inputs: inside it (pareto: y >= y_min; uniform:
  // lower <= y <= upper, with data lower = -1 < upper = 1).
  if (kernel == "pareto") lower = data[0][0];
  if (kernel == "uniform") {
    data[0][0] = lower = -1.0;
    data[1][0] = upper = 1.0;
  }
  m.add_param("p_y", shape, lower, upper);
  std::vector<Operand> ops = {param_operand(y.name, m, "p_y")};
  for (size_t i = 1; i < info.inputs.size(); ++i) ops.push_back(data_operand(info.inputs[i].name, {}, data[i - 1]));
  m.add_factor(kernel, std::move(ops), kernel);
  return true;
}

}  // namespace fastvi::bench
