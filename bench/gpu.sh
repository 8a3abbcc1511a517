#!/usr/bin/env bash
# Runs on the GPU machine (see ../shared/GPU.md): configure with CUDA, build with
# every core, then the steps named in $STEPS (default: tests,conformance):
#   tests        every unit/op-harness/E2E test (CUDA ones included) — kiln_tests
#   conformance  the ONNX node tests on the CPU and on CUDA
#   cuda-update  conformance on CUDA, rewriting expected_failures_cuda.txt
#   python       the pytest suite (CUDA tests included) against build/gpu/python
#   bench        bench/peers.py (kiln vs PyTorch eager / compile / CUDA graphs); $BENCH_ARGS
#   sweep        bench/model_sweep.py (exported models, kiln vs onnxruntime); $SWEEP_ARGS
#   ab           bench/env_ab.py $AB_ARGS (e.g. "--model bert --batch 1 '' KILN_ATTENTION_KEY_SPLIT=0")
#   profile      bench/profile_layers.py $PROFILE_ARGS (e.g. "--models bert --batch 1 --ncu")
# Logs go to $OUT (or ./gpu-logs) so they come back from the device tool (at most 8
# files: the benchmark's per-row logs are packed into bench_logs.tgz); a short
# table is printed last. $GTEST_FILTER narrows the tests step, $TEST_SHARDS (default 4)
# sets how many kiln_tests processes share the GPU; $TARGETS (e.g.
# "kiln kiln_tests") builds only those (the python step needs the default, all);
# $STEP_TIMEOUT (seconds, default 3000) bounds each step, so one that hangs still
# leaves the others' results inside the device tool's 10-minute call.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-logs}
STEPS=${STEPS:-tests,conformance}
mkdir -p "$OUT"
jobs=$(nproc)
start=$(date +%s)
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -1
  git rev-parse --short HEAD 2>/dev/null
} > "$OUT/device.txt" 2>&1
has() { [[ ",$STEPS," == *",$1,"* ]]; }
python_on=$(has python && echo ON || echo OFF)
cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_WITH_CUDA=ON -DKILN_BUILD_PYTHON=$python_on \
  -DPython3_EXECUTABLE="$(command -v python3)" \
  > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
# shellcheck disable=SC2086
cmake --build build/gpu -j"$jobs" ${TARGETS:+--target $TARGETS} > "$OUT/build.log" 2>&1 ||
  { grep -E "error" -A3 "$OUT/build.log" | head -60; exit 1; }
build_s=$(( $(date +%s) - start ))
rows=("| build (s) | $build_s |")
rc=0
T="timeout ${STEP_TIMEOUT:-3000}"
export PYTHONUNBUFFERED=1
if has tests; then
  # $TEST_SHARDS processes share the GPU (gtest sharding; default 4): the suite's
  # GPU tests are mostly small launches and host work (4 shards: ~1 minute on an H100).
  shards=${TEST_SHARDS:-4}
  pids=()
  for ((i = 0; i < shards; i++)); do
    GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i $T ./build/gpu/tests/kiln_tests --gtest_filter="${GTEST_FILTER:-*}" \
      > "$OUT/tests.$i.log" 2>&1 &
    pids+=($!)
  done
  t_rc=0
  for pid in "${pids[@]}"; do wait "$pid" || t_rc=$?; done
  cat "$OUT"/tests.*.log > "$OUT/tests.log" && rm -f "$OUT"/tests.*.log
  passed=$(grep -hE '^\[  PASSED  \] [0-9]+ test' "$OUT/tests.log" | awk '{s += $4} END {print s + 0}')
  names() { grep -E "^\[  $1 *\] [A-Za-z]" "$OUT/tests.log" | sed 's/ (.*//' | sort -u | wc -l; }
  rows+=("| kiln_tests | $passed passed, $(names FAILED) failed, $(names SKIPPED) skipped, $shards shards (rc $t_rc) |")
  grep -E '^\[  FAILED  \] [A-Za-z]' "$OUT/tests.log" | sort -u | head -40
  rc=$(( rc || t_rc ))
fi
if has conformance; then
  $T ./build/gpu/tests/conformance/kiln_conformance -j "$jobs" > "$OUT/conformance_cpu.log" 2>&1; c_rc=$?
  rows+=("| conformance CPU | $(grep -E 'passed' "$OUT/conformance_cpu.log" | tail -1) (rc $c_rc) |")
  $T ./build/gpu/tests/conformance/kiln_conformance --device cuda -j 16 --report "$OUT/conformance_cuda_report.tsv" \
    > "$OUT/conformance_cuda.log" 2>&1; g_rc=$?
  rows+=("| conformance CUDA | $(grep -E 'passed' "$OUT/conformance_cuda.log" | tail -1) (rc $g_rc) |")
  rc=$(( rc || c_rc || g_rc ))
fi
if has cuda-update; then
  ./build/gpu/tests/conformance/kiln_conformance --device cuda -j 16 --update-expectations \
    --report "$OUT/conformance_cuda_report.tsv" > "$OUT/conformance_cuda.log" 2>&1
  cp tests/conformance/expected_failures_cuda.txt "$OUT/" 2>/dev/null
  rows+=("| conformance CUDA (updated) | $(grep -E 'passed' "$OUT/conformance_cuda.log" | tail -1) |")
fi
if has python; then
  PYTHONPATH=$PWD/build/gpu/python KILN_CLI=$PWD/build/gpu/kiln python3 -m pytest tests/python -rs -q \
    -p no:cacheprovider > "$OUT/pytest.log" 2>&1; p_rc=$?
  rows+=("| pytest | $(tail -1 "$OUT/pytest.log") (rc $p_rc) |")
  grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20
  rc=$(( rc || p_rc ))
fi
if has bench; then
  # shellcheck disable=SC2086
  $T python3 bench/peers.py --kiln build/gpu/kiln ${BENCH_ARGS:-} > "$OUT/peers.log" 2>&1; b_rc=$?
  rows+=("| peers.py | rc $b_rc |")
  if [[ -d "$OUT/logs" ]]; then (cd "$OUT" && tar czf bench_logs.tgz logs && rm -rf logs); fi
  tail -40 "$OUT/peers.log"
fi
if has ab; then
  eval "$T python3 bench/env_ab.py ${AB_ARGS:-}" > "$OUT/ab.log" 2>&1; a_rc=$?
  rows+=("| env_ab.py | rc $a_rc |")
  tail -12 "$OUT/ab.log"
fi
if has profile; then
  # shellcheck disable=SC2086
  $T python3 bench/profile_layers.py ${PROFILE_ARGS:-} > "$OUT/profile.log" 2>&1; f_rc=$?
  rows+=("| profile_layers.py | rc $f_rc |")
  tail -40 "$OUT/profile.log"
fi
if has sweep; then
  # shellcheck disable=SC2086
  $T python3 bench/model_sweep.py --kiln build/gpu/kiln --out "$OUT" ${SWEEP_ARGS:-} > "$OUT/sweep.log" 2>&1; s_rc=$?
  rows+=("| model_sweep.py | rc $s_rc |")
  tail -45 "$OUT/models.md" 2>/dev/null
fi
echo
echo "| step | result |"
echo "|---|---|"
echo "| device | $(head -1 "$OUT/device.txt") |"
for r in "${rows[@]}"; do echo "$r"; done
exit $rc
