#!/usr/bin/env bash
# Sets kiln up on a fresh Debian 12 machine, then builds and benchmarks a model.
#   ./setup.sh           install, build, then `kiln build` + `kiln bench` a default CNN
#   ./setup.sh --no-run  install and build only (what CI does)
# Every step is idempotent: packages already installed, node tests already generated
# and an up-to-date build are skipped.
set -euo pipefail
cd "$(dirname "$0")"

run_model=1
for arg in "$@"; do
  case "$arg" in
    --no-run) run_model=0 ;;
    -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*"; }
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

step "system packages"
packages=(build-essential cmake ninja-build ccache pkg-config git
          libprotobuf-dev protobuf-compiler libdnnl-dev libgtest-dev libgmock-dev
          libcli11-dev nlohmann-json3-dev python3 python3-pip python3-venv python3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all present"
fi

step "python packages (requirements.txt)"
source scripts/python_env.sh
if [ -z "$KILN_PYTHON" ]; then
  # Debian's python3 is externally managed (PEP 668): install into a venv under build/.
  echo "creating build/venv"
  python3 -m venv build/venv
  build/venv/bin/python3 -m pip install --quiet --upgrade pip
  build/venv/bin/python3 -m pip install --quiet -r requirements.txt
  source scripts/python_env.sh
  if [ -z "$KILN_PYTHON" ]; then
    echo "setup.sh: build/venv does not have the packages of requirements.txt" >&2
    exit 1
  fi
fi
echo "using $KILN_PYTHON"

step "ONNX backend node tests"
"$KILN_PYTHON" scripts/gen_onnx_node_tests.py third_party_data/onnx-node-tests

step "release build"
jobs="$(nproc)"
cmake --preset release -DPython3_EXECUTABLE="$KILN_PYTHON" >/dev/null
cmake --build --preset release -j "$jobs"

if [ "$run_model" -eq 1 ]; then
  step "default model: build and benchmark"
  [ -f build/models/default.onnx ] || "$KILN_PYTHON" scripts/make_default_model.py build/models/default.onnx
  build/release/kiln build build/models/default.onnx -o build/models/default.engine
  build/release/kiln bench build/models/default.engine --duration 3
fi
step "done"
