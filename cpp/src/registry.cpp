#include "fastvi/registry.hpp"

#include <cmath>
#include <set>
#include <stdexcept>

namespace fastvi {

const std::vector<SupportInfo>& supports() {
  static const std::vector<SupportInfo> table = {
      {Support::Real, "real", "a finite real number"},
      {Support::Positive, "positive", "> 0"},
      {Support::NonNegative, "nonnegative", ">= 0"},
      {Support::UnitInterval, "unit_interval", "in the open interval (0, 1)"},
      {Support::Binary, "binary", "0 or 1"},
      {Support::Count, "count", "a non-negative integer"},
  };
  return table;
}

const char* support_name(Support s) {
  for (const auto& info : supports())
    if (info.support == s) return info.description;
  return "?";
}

const char* support_key(Support s) {
  for (const auto& info : supports())
    if (info.support == s) return info.key;
  return "?";
}

Support support_from_key(const std::string& key) {
  std::string keys;
  for (const auto& info : supports()) {
    if (key == info.key) return info.support;
    keys += (keys.empty() ? "" : ", ") + std::string(info.key);
  }
  throw std::invalid_argument("unknown support '" + key + "' (expected one of: " + keys + ")");
}

bool in_support(Support s, double x) {
  switch (s) {
    case Support::Real:
      return std::isfinite(x);
    case Support::Positive:
      return x > 0 && std::isfinite(x);
    case Support::NonNegative:
      return x >= 0 && std::isfinite(x);
    case Support::UnitInterval:
      return x > 0 && x < 1;
    case Support::Binary:
      return x == 0 || x == 1;
    case Support::Count:
      return x >= 0 && std::isfinite(x) && x == std::floor(x);
  }
  return false;
}

KernelRegistry& KernelRegistry::global() {
  static KernelRegistry* registry = [] {
    auto* r = new KernelRegistry();
    register_builtin_kernels(*r);
    return r;
  }();
  return *registry;
}

void KernelRegistry::add(KernelInfo info) {
  if (info.name.empty()) throw std::invalid_argument("kernel name must not be empty");
  if (info.inputs.empty()) throw std::invalid_argument("kernel '" + info.name + "' must declare its variate");
  if (!info.factory) throw std::invalid_argument("kernel '" + info.name + "' has no factory");
  std::set<std::string> seen;  // input names and aliases: each must name one input
  for (const auto& in : info.inputs) {
    if (in.name.empty()) throw std::invalid_argument("kernel '" + info.name + "' has an input without a name");
    std::vector<std::string> names = in.aliases;
    names.push_back(in.name);
    for (const auto& n : names)
      if (n.empty() || !seen.insert(n).second)
        throw std::invalid_argument("kernel '" + info.name + "': input name or alias '" + n + "' is empty or repeated");
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (kernels_.count(info.name) > 0)
    throw std::invalid_argument("a kernel named '" + info.name + "' is already registered");
  const std::string name = info.name;
  kernels_.emplace(name, std::move(info));
}

KernelInfo KernelRegistry::get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = kernels_.find(name);
  if (it != kernels_.end()) return it->second;
  std::string known;
  for (const auto& kv : kernels_) known += (known.empty() ? "" : ", ") + kv.first;
  throw std::invalid_argument("unknown kernel '" + name + "'; registered kernels: " + known);
}

bool KernelRegistry::contains(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return kernels_.count(name) > 0;
}

std::vector<std::string> KernelRegistry::names() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> out;
  for (const auto& kv : kernels_) out.push_back(kv.first);
  return out;
}

}  // namespace fastvi
