// Name -> kernel lookup. Built-in kernels are added by register_builtin_kernels; users add more.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fastvi/kernel.hpp"

namespace fastvi {

class KernelRegistry {
 public:
  // The process-wide registry, with the built-in kernels already registered.
  static KernelRegistry& global();

  void add(KernelInfo info);  // throws std::invalid_argument if the name is taken
  const KernelInfo& get(const std::string& name) const;  // throws std::invalid_argument naming the options
  bool contains(const std::string& name) const { return kernels_.count(name) > 0; }
  std::vector<std::string> names() const;

 private:
  std::map<std::string, KernelInfo> kernels_;
};

void register_builtin_kernels(KernelRegistry& registry);

}  // namespace fastvi
