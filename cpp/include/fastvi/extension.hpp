// Registering C++ kernels from a separately compiled Python extension module.
//
// Header-only and uses pybind11; the C++ core never includes it. An extension module (see
// examples/custom_kernel) registers its kernels when it is imported:
//
//   #include <fastvi/extension.hpp>
//
//   PYBIND11_MODULE(my_kernels, m) {
//     fastvi::extension::register_kernel({"laplace", "Laplace(y | loc, scale)", {...inputs...}, true,
//                                         [](std::vector<fastvi::Operand> ops, fastvi::Index size) {
//                                           return std::make_unique<Laplace>(std::move(ops), size);
//                                         }});
//   }
//
// How: fastvi._core publishes a PyCapsule named kCapsuleName that holds an Api: a function that
// adds a KernelInfo to the process-wide registry, plus facts about how _core was compiled.
//
// ABI: a KernelInfo (std::string, std::vector, std::function) and the Operands and Batches the
// kernel later receives cross the boundary between two shared objects as C++ objects. That is fine
// because both modules are compiled on the same machine with the same compiler, standard library
// and Eigen: check_abi compares what it can see (type sizes, the compiler and library ABI, Eigen's
// version and allocation alignment) and refuses, at import, an extension that does not match.
// Eigen's alignment matters most: an Operand's data (an Eigen vector) allocated by _core is freed
// by the extension's kernel, so both must use the same -march flags (fastvi.get_compile_flags()).
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>
#include <utility>

#include "fastvi/kernel.hpp"

namespace fastvi::extension {

// Bump when Api, KernelInfo, Operand, Batch or the Kernel contract changes incompatibly.
inline constexpr int kApiVersion = 5;  // 2: Kernel::evaluate is const, scratch comes in Batch; 3: InputInfo::aliases;
                                       // 4: Operand views, InputInfo::in_place; 5: Kernel::set_data_rows
inline constexpr const char* kCapsuleName = "fastvi._core._extension_api";

// How this translation unit sees the types that cross the module boundary.
struct AbiFacts {
  int api_version;
  std::size_t operand_size, batch_size, input_info_size, kernel_info_size, function_size;
  int eigen_version;      // world * 10000 + major * 100 + minor
  int eigen_align_bytes;  // EIGEN_DEFAULT_ALIGN_BYTES: how Eigen's heap allocations are aligned
  int cxx11_abi;          // _GLIBCXX_USE_CXX11_ABI, or -1
  int compiler_version;   // major * 100 + minor (GCC or Clang), or -1
};

constexpr AbiFacts abi_here() {
  return AbiFacts{
      kApiVersion,
      sizeof(Operand),
      sizeof(Batch),
      sizeof(InputInfo),
      sizeof(KernelInfo),
      sizeof(KernelFactory),
      EIGEN_WORLD_VERSION * 10000 + EIGEN_MAJOR_VERSION * 100 + EIGEN_MINOR_VERSION,
      EIGEN_DEFAULT_ALIGN_BYTES,
#ifdef _GLIBCXX_USE_CXX11_ABI
      _GLIBCXX_USE_CXX11_ABI,
#else
      -1,
#endif
#if defined(__clang__)
      __clang_major__ * 100 + __clang_minor__,
#elif defined(__GNUC__)
      __GNUC__ * 100 + __GNUC_MINOR__,
#else
      -1,
#endif
  };
}

// What _core publishes. Only ever extended at the end; `abi` stays first.
struct Api {
  AbiFacts abi;
  // Adds a kernel to the registry; throws std::invalid_argument if the name is taken or the
  // KernelInfo is incomplete (no inputs, no factory).
  void (*register_kernel)(KernelInfo info);
};

// Empty if `core` and `ext` agree, else a description of every difference.
inline std::string abi_mismatch(const AbiFacts& core, const AbiFacts& ext) {
  std::string out;
  auto check = [&out](const char* what, long long c, long long e) {
    if (c != e)
      out += std::string("\n  ") + what + ": fastvi " + std::to_string(c) + ", this module " + std::to_string(e);
  };
  check("extension API version", core.api_version, ext.api_version);
  check("sizeof(Operand)", (long long)core.operand_size, (long long)ext.operand_size);
  check("sizeof(Batch)", (long long)core.batch_size, (long long)ext.batch_size);
  check("sizeof(InputInfo)", (long long)core.input_info_size, (long long)ext.input_info_size);
  check("sizeof(KernelInfo)", (long long)core.kernel_info_size, (long long)ext.kernel_info_size);
  check("sizeof(KernelFactory)", (long long)core.function_size, (long long)ext.function_size);
  check("Eigen version", core.eigen_version, ext.eigen_version);
  check("Eigen allocation alignment (-march flags)", core.eigen_align_bytes, ext.eigen_align_bytes);
  check("_GLIBCXX_USE_CXX11_ABI", core.cxx11_abi, ext.cxx11_abi);
  check("compiler version", core.compiler_version, ext.compiler_version);
  return out;
}

// The Api published by fastvi._core (importing fastvi if need be), after checking that this
// module was compiled compatibly. Throws pybind11::error_already_set or ImportError.
inline const Api& api() {
  static const Api* cached = nullptr;
  if (cached) return *cached;
  auto* api = static_cast<const Api*>(PyCapsule_Import(kCapsuleName, 0));
  if (!api) throw pybind11::error_already_set();
  const std::string mismatch = abi_mismatch(api->abi, abi_here());
  if (!mismatch.empty())
    throw pybind11::import_error(
        "this fastvi extension module was not compiled like fastvi's _core, so they cannot share kernels:" + mismatch +
        "\nRebuild it against the installed fastvi, with the same compiler, Eigen and "
        "fastvi.get_compile_flags(). (A portable fastvi loads the engine build for the CPU it runs on, "
        "fastvi.get_isa(); the environment variable FASTVI_ISA picks another.)");
  cached = api;
  return *api;
}

// Registers a kernel with fastvi; call it from the extension's PYBIND11_MODULE body. The kernel is
// then usable by name in fastvi.Model.add. Throws std::invalid_argument (ValueError in Python) if
// the name is taken, e.g. by a built-in kernel.
inline void register_kernel(KernelInfo info) { api().register_kernel(std::move(info)); }

}  // namespace fastvi::extension
