#!/usr/bin/env bash
# Builds (incrementally) and runs every CPU test:
#   1. ctest on the release build: unit tests, end-to-end models, ONNX conformance;
#   2. the parser/runtime/bad-input tests built with AddressSanitizer + UBSan.
# Ends with one line "N passed, M failed". Run ./setup.sh (or --no-run) once first.
set -uo pipefail
cd "$(dirname "$0")"
source scripts/python_env.sh
jobs="${KILN_TEST_JOBS:-2}"
passed=0
failed=0
skipped=0
status=0

step() { printf '\n== %s\n' "$*"; }
py_flag=()
[ -n "$KILN_PYTHON" ] && py_flag=(-DPython3_EXECUTABLE="$KILN_PYTHON")

step "release build"
if ! { cmake --preset release "${py_flag[@]}" >/dev/null && cmake --build --preset release -j "$(nproc)"; }; then
  echo "release build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

step "ctest (release)"
log=build/release/ctest.log
ctest --preset release -j "$jobs" 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# "97% tests passed, 3 tests failed out of 120"
if line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -1); then
  f=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
  t=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  s=$(grep -c '\*\*\*Skipped' "$log" || true)
  passed=$((passed + t - f - s))
  failed=$((failed + f))
  skipped=$((skipped + s))
else
  failed=$((failed + 1))
  status=1
fi

step "Python API (pytest)"
plog=build/release/pytest.log
PYTHONPATH="$PWD/build/release/python" KILN_CLI="$PWD/build/release/kiln" \
  "${KILN_PYTHON:-python3}" -m pytest tests/python -q -p no:cacheprovider 2>&1 | tee "$plog"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
# pytest's last line: "2 failed, 104 passed, 1 skipped in 9.10s"
summary=$(tail -1 "$plog")
count() { grep -oE "[0-9]+ $1" <<<"$summary" | grep -oE '^[0-9]+' || echo 0; }
p=$(count passed); f=$(( $(count failed) + $(count 'errors?') )); s=$(count skipped)
passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); status=1; fi

step "sanitizers (ASan + UBSan): parser, runtime and bad-input tests"
filter="${KILN_ASAN_FILTER:-Onnx*:Engine*:Runtime*:MemoryPlan*:NetworkDefinition*:Passes*:Graph*:BadInput*:NpyTest*:E2E*}"
# kiln too: the bad-input and end-to-end tests run the (sanitized) kiln command.
if cmake --preset asan "${py_flag[@]}" >/dev/null &&
   cmake --build --preset asan -j "$(nproc)" --target kiln_tests kiln; then
  alog=build/asan/asan.log
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    build/asan/tests/kiln_tests --gtest_filter="$filter" 2>&1 | tee "$alog"
  rc="${PIPESTATUS[0]}"
  [ "$rc" -eq 0 ] || status=1
  # "[==========] 75 tests from 13 test suites ran." / "[  PASSED  ] 58 tests." /
  # "[  SKIPPED ] 1 test, listed below:"; failures are the rest.
  ran=$(sed -nE 's/^\[==========\] ([0-9]+) tests? from .* ran\..*/\1/p' "$alog" | tail -1)
  p=$(sed -nE 's/^\[  PASSED  \] ([0-9]+) tests?.*/\1/p' "$alog" | tail -1)
  s=$(sed -nE 's/^\[  SKIPPED \] ([0-9]+) tests?, listed below.*/\1/p' "$alog" | tail -1)
  if [ -n "$ran" ] && [ -n "$p" ]; then
    f=$((ran - p - ${s:-0}))
    # A clean gtest run that the sanitizer failed afterwards (leak report at exit).
    if [ "$f" -eq 0 ] && [ "$rc" -ne 0 ]; then f=1; fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
  else
    echo "kiln_tests (asan) ended without a summary (exit code $rc)"
    failed=$((failed + 1)); status=1
  fi
else
  echo "asan build failed"
  failed=$((failed + 1))
  status=1
fi

echo
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
