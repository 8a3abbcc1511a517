#!/usr/bin/env bash
# Runs on the GPU machine (see ../shared/GPU.md): configure with CUDA, build
# with every core, run the CUDA tests and the CPU test suite, print a table.
# Logs go to $OUT (or ./gpu-logs) so they come back from the device tool.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-logs}
mkdir -p "$OUT"
jobs=$(nproc)
start=$(date +%s)
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -1
} > "$OUT/device.txt" 2>&1
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_WITH_CUDA=ON > "$OUT/configure.log" 2>&1 \
  || { tail -30 "$OUT/configure.log"; exit 1; }
cmake --build build/gpu -j"$jobs" > "$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
build_s=$(( $(date +%s) - start ))
./build/gpu/tests/kiln_cuda_tests > "$OUT/cuda_tests.log" 2>&1; cuda_rc=$?
(cd build/gpu && ctest -j"$jobs" -LE cuda --output-on-failure) > "$OUT/ctest.log" 2>&1; ctest_rc=$?
echo
echo "| step | result |"
echo "|---|---|"
echo "| device | $(head -1 "$OUT/device.txt") |"
echo "| build (s) | $build_s |"
echo "| CUDA tests | $(grep -E '^\[  (PASSED|FAILED)' "$OUT/cuda_tests.log" | tr '\n' ' ') (rc $cuda_rc) |"
echo "| ctest (CPU) | $(grep -E 'tests passed' "$OUT/ctest.log") (rc $ctest_rc) |"
exit $(( cuda_rc != 0 || ctest_rc != 0 ))
