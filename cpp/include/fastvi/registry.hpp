// Name -> kernel lookup. Built-in kernels are added by register_builtin_kernels; users add more.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "fastvi/kernel.hpp"

namespace fastvi {

class KernelRegistry {
 public:
  // The process-wide registry, with the built-in kernels already registered.
  static KernelRegistry& global();

  // Every method may be called from any thread (kernels are registered while other threads fit).
  void add(KernelInfo info);                      // throws std::invalid_argument if the name is taken
  KernelInfo get(const std::string& name) const;  // a copy; throws std::invalid_argument naming the options
  bool contains(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, KernelInfo> kernels_;
};

void register_builtin_kernels(KernelRegistry& registry);

}  // namespace fastvi
