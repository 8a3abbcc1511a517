#!/usr/bin/env python3
"""kiln's fused attention alone, at chosen shapes: every tactic's build-time timing and the engine's GPU time.

    python3 bench/attn_micro.py --kiln build/release/kiln 256x12x197x197 256x12x192x197 128x12x128x128:mask

Each shape is BxHxSqxSk (head size 64, FP16); ":mask" adds a [B, 1, 1, Sk] additive mask input (BERT's).
The model is the exporters' form: Q [B, Sq, H, 64], K and V [B, Sk, H, 64] transposed to heads,
MatMul(Q, K^T) * 1/8 (+ mask), Softmax, MatMul(P, V), back to [B, Sq, H * 64]; kiln fuses it
into one FusedAttention node. Prints the builder's "candidates of" line (each tactic's time,
named) and `kiln bench --cuda-graph --no-data-transfers`'s GPU compute median. Runs on the GPU
machine (needs onnx); what it answers: how a shape's rows and keys cost, e.g. ViT's 197 query rows
against 192 (the fourth 64-row tile's 5 live rows).
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper


def model(b, h, sq, sk, mask, path):
    d = 64
    f16 = TensorProto.FLOAT16
    ins = [helper.make_tensor_value_info("q", f16, [b, sq, h, d]),
           helper.make_tensor_value_info("k", f16, [b, sk, h, d]),
           helper.make_tensor_value_info("v", f16, [b, sk, h, d])]
    nodes = [helper.make_node("Transpose", ["q"], ["qt"], perm=[0, 2, 1, 3]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["v"], ["vt"], perm=[0, 2, 1, 3]),
             helper.make_node("MatMul", ["qt", "kt"], ["s0"]),
             helper.make_node("Mul", ["s0", "c"], ["s1"])]
    inits = [helper.make_tensor("c", f16, [], [0.125]),
             helper.make_tensor("shape", TensorProto.INT64, [3], [b, sq, h * d])]
    s = "s1"
    if mask:
        ins.append(helper.make_tensor_value_info("mask", f16, [b, 1, 1, sk]))
        nodes.append(helper.make_node("Add", ["s1", "mask"], ["s2"]))
        s = "s2"
    nodes += [helper.make_node("Softmax", [s], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "vt"], ["o0"]),
              helper.make_node("Transpose", ["o0"], ["o1"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["o1", "shape"], ["o"])]
    out = [helper.make_tensor_value_info("o", f16, [b, sq, h * d])]
    g = helper.make_graph(nodes, "attn", ins, out, inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("shapes", nargs="+", help="BxHxSqxSk[:mask]")
    p.add_argument("--kiln", type=Path, default=Path("build/release/kiln"))
    p.add_argument("--work", type=Path, default=Path("/tmp/kiln-attn"))
    p.add_argument("--iterations", type=int, default=200)
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in a.shapes:
        dims, _, opt = spec.partition(":")
        b, h, sq, sk = (int(x) for x in dims.split("x"))
        tag = spec.replace(":", "_")
        onnx_path, eng, js = a.work / f"{tag}.onnx", a.work / f"{tag}.kiln", a.work / f"{tag}.json"
        model(b, h, sq, sk, opt == "mask", onnx_path)
        r = subprocess.run([str(a.kiln), "build", str(onnx_path), "-o", str(eng), "--fp16", "--input-io-formats",
                            "fp16", "--output-io-formats", "fp16", "--device", "cuda", "-v"], capture_output=True, text=True,
                           timeout=300)
        cands = [ln.strip() for ln in (r.stdout + r.stderr).splitlines() if "candidates of" in ln]
        if r.returncode:
            print(f"{spec}: build failed: {(r.stderr or r.stdout).strip()[-400:]}")
            continue
        r = subprocess.run([str(a.kiln), "bench", str(eng), "--device", "cuda", "--cuda-graph",
                            "--no-data-transfers", "--iterations", str(a.iterations), "--json", str(js)],
                           capture_output=True, text=True, timeout=300)
        gpu = json.loads(js.read_text())["gpu_compute_ms"]["median"] if r.returncode == 0 else None
        for c in cands:
            print(f"{spec}: {c}")
        rows.append((spec, gpu))
    print("\n| shape BxHxSqxSk | GPU compute median us |\n|---|---|")
    for spec, gpu in rows:
        print(f"| {spec} | {gpu * 1000:.1f} |" if gpu is not None else f"| {spec} | failed |")


if __name__ == "__main__":
    sys.exit(main())
