#!/bin/bash
# On this (GPU-less) machine: build kiln, kiln_tests and kiln_conformance in build/release and
# pack them, stripped, with the two shared libraries the GPU machine lacks, into
# build/carry/bundle.tar.xz (~33 MB); with --data also third_party_data/ into
# build/carry2/tpd.tar.xz. Pass those folders as the device tool's `carry`, then on the device
# `source bench/carry_unpack.sh` (bench/README.md, "Carrying binaries").
set -euo pipefail
cd "$(dirname "$0")/.."
ninja -C build/release -j"$(nproc)" kiln kiln_tests kiln_conformance >/dev/null
pack=$(mktemp -d)
trap 'rm -rf "$pack"' EXIT
cp build/release/kiln build/release/tests/kiln_tests build/release/tests/conformance/kiln_conformance "$pack"/
strip "$pack"/*
for lib in /lib/x86_64-linux-gnu/libdnnl.so.? /lib/x86_64-linux-gnu/libprotobuf.so.32; do cp -L "$lib" "$pack"/; done
mkdir -p build/carry
tar cf - -C "$pack" . | xz -T"$(nproc)" -6 >build/carry/bundle.tar.xz
echo "build/carry/bundle.tar.xz: $(du -h build/carry/bundle.tar.xz | cut -f1) at $(git rev-parse --short HEAD)"
if [[ "${1:-}" == "--data" ]]; then
  mkdir -p build/carry2
  tar cf - third_party_data | xz -T"$(nproc)" -6 >build/carry2/tpd.tar.xz
  echo "build/carry2/tpd.tar.xz: $(du -h build/carry2/tpd.tar.xz | cut -f1)"
fi
