# On the GPU machine, in the checkout the device tool runs in: `source bench/carry_unpack.sh`.
# Unpacks build/carry/bundle.tar.xz (bench/carry_pack.sh) to /tmp/kb, puts kiln and kiln_tests
# where the scripts look (build/release/), exports LD_LIBRARY_PATH for the carried libraries,
# links the checkout to /work/main (the tests have their source paths compiled in) and
# unpacks third_party_data/ when build/carry2/tpd.tar.xz came too. Then e.g.
#   for i in 0 1 2 3; do GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i /tmp/kb/kiln_tests > $OUT/t$i.log 2>&1 & done; wait
#   /tmp/kb/kiln_conformance --device cuda -j 16
#   python3 bench/env_ab.py --kiln build/release/kiln --model bert --batch 1 "" VAR=1
mkdir -p /tmp/kb && tar xJf build/carry/bundle.tar.xz -C /tmp/kb
mkdir -p build/release/tests
cp /tmp/kb/kiln build/release/kiln
cp /tmp/kb/kiln_tests build/release/tests/
export LD_LIBRARY_PATH=/tmp/kb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p /work
[ -e /work/main ] || ln -s "$PWD" /work/main
if [ -f build/carry2/tpd.tar.xz ] && [ ! -d third_party_data/onnx-node-tests ]; then tar xJf build/carry2/tpd.tar.xz; fi
