// The private module fastvi._cpu: which x86-64 microarchitecture level this CPU (and its OS) runs,
// for python/fastvi/_isa.py to choose among the engine's builds (CMake's FASTVI_ISA_VARIANTS).
// It is compiled for the baseline and uses no engine code, so any CPU can load it; an engine
// module built for a level the CPU lacks could fault as it loads (its static initialisers may
// use the level's instructions), so the choice is made before any of them is imported. Plain
// Python C API: the module has one function and no types.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace {

// 1 (the x86-64 baseline) to 4 (x86-64-v4: AVX-512 F/BW/CD/DQ/VL), or 0 on other CPUs. GCC's and
// Clang's __builtin_cpu_supports read cpuid and XGETBV, so a level counts only if the OS saves its
// registers too.
int x86_64_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
#if (defined(__clang__) && __clang_major__ >= 16) || (!defined(__clang__) && __GNUC__ >= 12)
  if (__builtin_cpu_supports("x86-64-v4")) return 4;
  if (__builtin_cpu_supports("x86-64-v3")) return 3;
  if (__builtin_cpu_supports("x86-64-v2")) return 2;
#else  // older compilers know the features, not the levels: the ones the levels add that matter
  const bool v2 =
      __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("ssse3");
  const bool v3 = v2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
  if (v4) return 4;
  if (v3) return 3;
  if (v2) return 2;
#endif
  return 1;
#else
  return 0;
#endif
}

PyObject* py_x86_64_level(PyObject*, PyObject*) { return PyLong_FromLong(x86_64_level()); }

PyMethodDef kMethods[] = {
    {"x86_64_level", py_x86_64_level, METH_NOARGS,
     "The x86-64 level this CPU and OS run: 1 (baseline) to 4 (x86-64-v4); 0 if not x86-64."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef make_module_def() {
  PyModuleDef def{};
  def.m_base = PyModuleDef_HEAD_INIT;
  def.m_name = "_cpu";
  def.m_doc = "Which x86-64 level the CPU runs (private: see fastvi._isa)";
  def.m_size = -1;
  def.m_methods = kMethods;
  return def;
}

PyModuleDef kModule = make_module_def();

}  // namespace

PyMODINIT_FUNC PyInit__cpu() { return PyModule_Create(&kModule); }
