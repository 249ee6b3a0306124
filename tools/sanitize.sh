#!/usr/bin/env bash
# Builds fastvi's extension with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# FASTVI_SANITIZE=ON) into a virtual environment of its own, with a build directory of its own,
# and runs the test suite (or the pytest arguments given) against it. See tools/README.md.
#
#   tools/sanitize.sh                          # the whole suite (tests/)
#   tools/sanitize.sh tests/test_bad_input.py  # any pytest arguments instead
#
# Environment:
#   FASTVI_SAN_VENV   the virtual environment (default: build/asan-venv in the checkout); made
#                     with --system-site-packages if missing, build requirements pip-installed
#   FASTVI_SAN_LOCK   a lock file: if set, the two builds run holding `flock` on it
#   FASTVI_SAN_LOGS   where pytest's output and the report summary go (default:
#                     build/asan-logs, emptied first)
#   CXX               the compiler (default g++; its libasan/libubsan are preloaded)
#
# Exit status: pytest's, or 1 if there was any sanitizer report even though pytest passed.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

venv="${FASTVI_SAN_VENV:-$repo/build/asan-venv}"
logs="${FASTVI_SAN_LOGS:-$repo/build/asan-logs}"
cxx="${CXX:-g++}"

# The sanitizer runtimes of the compiler that builds the extension. Python itself is not
# instrumented, so libasan has to be loaded first, with LD_PRELOAD.
libasan="$("$cxx" -print-file-name=libasan.so)"
libubsan="$("$cxx" -print-file-name=libubsan.so)"
for lib in "$libasan" "$libubsan"; do
  if [ ! -e "$lib" ]; then
    echo "sanitize.sh: $cxx has no $(basename "$lib") (Debian: apt-get install libasan8 libubsan1)" >&2
    exit 2
  fi
done
libasan="$(readlink -f "$libasan")"
libubsan="$(readlink -f "$libubsan")"

t0=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv --system-site-packages "$venv"
fi
py="$venv/bin/python"
# Build requirements (pyproject.toml's [build-system] plus CMake and Ninja): the builds below
# run without isolation, so that the example extension sees this fastvi.
"$py" -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.12" "cmeel-eigen>=3.4" "cmake>=3.18" ninja

waited=0
if [ -n "${FASTVI_SAN_LOCK:-}" ]; then  # one lock for both builds; the wait is timed apart
  exec 9>"$FASTVI_SAN_LOCK"
  tw=$(date +%s)
  flock 9
  waited=$(($(date +%s) - tw))
fi
tb=$(date +%s)
san_flags="-fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g"
# install.strip=false: scikit-build-core strips the installed module by default, and the reports
# would lose their file:line.
echo "== building fastvi with FASTVI_SANITIZE=ON (build/asan)"
"$py" -m pip install --quiet --no-build-isolation \
  --config-settings=build-dir=build/asan \
  --config-settings=install.strip=false \
  --config-settings=cmake.define.FASTVI_SANITIZE=ON \
  ".[test]"
echo "== building examples/custom_kernel, instrumented alike (examples/custom_kernel/build/asan)"
# Its CMake imports fastvi (for the headers and flags), which needs the runtimes preloaded.
LD_PRELOAD="$libasan $libubsan" ASAN_OPTIONS=detect_leaks=0 \
  "$py" -m pip install --quiet --no-build-isolation \
  --config-settings=build-dir=build/asan \
  --config-settings=install.strip=false \
  --config-settings=cmake.build-type=RelWithDebInfo \
  "--config-settings=cmake.define.CMAKE_CXX_FLAGS=$san_flags" \
  "--config-settings=cmake.define.CMAKE_MODULE_LINKER_FLAGS=-fsanitize=address,undefined" \
  ./examples/custom_kernel
t1=$(date +%s)
if [ -n "${FASTVI_SAN_LOCK:-}" ]; then
  flock -u 9
  exec 9>&-
fi

core="$(ls "$venv"/lib/python3*/site-packages/fastvi/_core*.so)"
if ! ldd "$core" | grep libasan >/dev/null; then  # (not grep -q: its early exit fails ldd under pipefail)
  echo "sanitize.sh: $core is not linked with libasan: the FASTVI_SANITIZE build did not take" >&2
  exit 2
fi

rm -rf "$logs"
mkdir -p "$logs"
# detect_leaks=0: CPython keeps its interned objects, module states etc. until exit by design,
#   so LeakSanitizer reports thousands of "leaks" that are not fastvi's.
# allocator_may_return_null=1: an allocation too large for the address space returns null, so
#   operator new throws std::bad_alloc as in a normal build (fastvi turns it into MemoryError),
#   instead of ASan aborting the process with "requested allocation size exceeds maximum".
# UBSan: print_stacktrace=1; halt_on_error=0 (the default) reports and goes on, so one run
#   lists every report; UBSAN_OPTIONS=halt_on_error=1 stops at the first.
# PYTHONMALLOC=malloc: Python objects and buffers come from malloc, so ASan sees overflows
#   into them too (pymalloc's arenas are invisible to it).
# pytest --capture=sys: reports are written to fd 2, which pytest's default (fd) capture would
#   swallow, and lose altogether when a report ends the process.
export LD_PRELOAD="$libasan $libubsan${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONMALLOC=malloc
export CI="${CI:-1}"  # the example extension is required, as in CI

if [ $# -eq 0 ]; then
  # The Ctrl-C test sends SIGINT after 0.5 s, expecting the fit loop to be running by then; under
  # the sanitizers the mode search before it takes longer, and the KeyboardInterrupt it then
  # raises (correctly: there is no state to return yet) ends the whole pytest run.
  set -- tests --deselect tests/test_fit.py::test_ctrl_c_returns_the_state_reached_so_far
fi
echo "== pytest $* (output also in $logs/pytest.log)"
set +e
"$py" -m pytest -p no:cacheprovider --capture=sys "$@" 2>&1 | tee "$logs/pytest.log"
status=${PIPESTATUS[0]}
set -e
t2=$(date +%s)
unset LD_PRELOAD

# Every report, once per place and kind (UBSan: "file:line:col: runtime error: ..."; ASan:
# "ERROR: AddressSanitizer: kind" followed by the stack, whose first fastvi frame says where).
grep -E "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer" "$logs/pytest.log" \
  | sed -E -e 's/^/ /' -e 's/^.* (\/[^ ]+:[0-9]+:[0-9]+: runtime error: )/\1/' -e 's/^ ?==[0-9]+==//' \
          -e 's/0x[0-9a-f]+/0x.../g' -e 's/(value|of|by|to) -?[0-9][0-9.e+]*/\1 N/g' \
  | sort | uniq -c > "$logs/summary.txt" || true
if [ -s "$logs/summary.txt" ]; then
  echo "== sanitizer reports (count, place, kind; full reports in $logs/pytest.log):"
  cat "$logs/summary.txt"
  if [ "$status" -eq 0 ]; then status=1; fi
else
  echo "== no sanitizer reports"
fi
echo "== set-up $((tb - t0 - waited)) s, build $((t1 - tb)) s (after $waited s waiting for the lock), tests $((t2 - t1)) s, exit status $status"
exit "$status"
