#!/usr/bin/env python3
"""Per-layer GPU profile of kiln engines for the peers.py models (where the time goes).

    python3 bench/profile_layers.py --models vit_b_16,resnet50 --batch 32 [--fp32] [--top 15] [--ncu]

Exports each model (peers.py's definitions, random weights), builds a CUDA engine
and runs `kiln bench --dump-profile`, then prints the slowest layers and the time
summed per op type. Runs on the GPU machine after bench/gpu.sh has built build/gpu.

The layer profile times each layer between events with a sync, which adds a few
microseconds per layer: for small batches it says which layers matter, not their
kernel time. `--ncu` also runs one inference under Nsight Compute (one metric,
gpu__time_duration, L2 not flushed between kernels) and prints every kernel's own
duration, summed by kernel name, and the launch count: the truth for batch 1.
"""
import argparse
import collections
import csv
import glob
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from kernel_gaps import kernel_base_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,vit_b_16,bert,yolov8n")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--fp32", action="store_true")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--kiln", type=Path, default=ROOT / "build/gpu/kiln")
    p.add_argument("--work", type=Path, default=Path("/tmp/kiln-profile"))
    p.add_argument("--build-args", default="", help="extra arguments to `kiln build`, e.g. \"--opt-level 0\"")
    p.add_argument("--ncu", action="store_true", help="also list kernel durations from Nsight Compute")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    for name in a.models.split(","):
        name = peers.ALIASES.get(name, name)
        _, onnx_path = peers.build_model(name, a.work)
        ins, _ = peers.onnx_io(onnx_path)
        example = peers.MODELS[name]["inputs"](a.batch, peers.torch.Generator().manual_seed(0))
        shapes = ",".join(f"{n}:{'x'.join(str(d) for d in example[n].shape)}" for n in ins)
        eng = a.work / f"{name}.kiln"
        prec = [] if a.fp32 else ["--fp16"]
        b = subprocess.run([str(a.kiln), "build", str(onnx_path), "-o", str(eng), "--device", "cuda", *prec,
                            "--shapes", shapes, "-v", *a.build_args.split()], capture_output=True, text=True, timeout=300)
        if b.returncode:
            print(f"{name}: build failed: {b.stderr[-500:]}")
            continue
        fallback = [l for l in b.stderr.splitlines() if "run on the CPU" in l or "stats" in l]
        prof = a.work / f"{name}-profile.json"
        r = subprocess.run([str(a.kiln), "bench", str(eng), "--shapes", shapes, "--device", "cuda", "--cuda-graph",
                            "--no-data-transfers", "--iterations", "50", "--export-profile", str(prof)],
                           capture_output=True, text=True, timeout=300)
        if r.returncode:
            print(f"{name}: bench failed: {r.stderr[-500:]}")
            continue
        layers = json.loads(prof.read_text())
        total = sum(l["ms"] for l in layers)
        median = [l for l in r.stdout.splitlines() if l.startswith(("Latency", "GPU Compute", "CUDA:"))]
        print(f"\n== {name} bs{a.batch} {'fp32' if a.fp32 else 'fp16'} {a.build_args}: {len(layers)} layers, "
              f"{total:.3f} ms serialized; {' | '.join(median)}")
        for l in fallback:
            print("  " + l.strip()[:300])
        by_op = collections.Counter()
        count = collections.Counter()
        for l in layers:
            op = l["name"].split("/")[-1].split("_")[0] if "/" in l["name"] else l["name"].rstrip("0123456789_")
            by_op[op] += l["ms"]
            count[op] += 1
        print("  by op: " + ", ".join(f"{op} {ms:.3f} ms ({count[op]})" for op, ms in by_op.most_common(10)))
        for l in sorted(layers, key=lambda l: -l["ms"])[: a.top]:
            print(f"  {l['ms']:8.4f} ms {l['percent']:5.1f}%  {l['name']}")
        if a.ncu:
            ncu_kernels(a, eng, shapes)


def find_ncu():
    found = shutil.which("ncu") or sorted(glob.glob("/opt/nvidia/nsight-compute/*/ncu") +
                                          glob.glob("/usr/local/cuda*/bin/ncu"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def ncu_kernels(a, eng, shapes):
    """One inference (no CUDA graph, no warm-up) under ncu; kernels summed by name."""
    ncu = find_ncu()
    if not ncu:
        print("  ncu: not found")
        return
    cmd = [ncu, "--csv", "--print-units", "base", "--metrics", "gpu__time_duration.sum", "--clock-control", "none",
           "--cache-control", "none", "--launch-count", "3000", str(a.kiln), "bench", str(eng), "--shapes", shapes,
           "--device", "cuda", "--no-data-transfers", "--warmup", "0", "--iterations", "1"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    rows = [l for l in r.stdout.splitlines() if l.startswith('"')]
    if not rows:
        print(f"  ncu: no kernels (rc {r.returncode}): {(r.stderr or r.stdout)[-400:]}")
        return
    kernels = []
    for row in csv.DictReader(io.StringIO("\n".join(rows))):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        ns = float(row["Metric Value"].replace(",", ""))
        kernels.append((row["Kernel Name"], ns / 1e6, row.get("Grid Size", ""), row.get("Block Size", "")))
    total = sum(k[1] for k in kernels)
    by_name = collections.defaultdict(lambda: [0.0, 0])
    for name, ms, _, _ in kernels:
        short = kernel_base_name(name)
        by_name[short][0] += ms
        by_name[short][1] += 1
    print(f"  ncu: {len(kernels)} kernels (incl. load-time ones), {total:.3f} ms summed")
    for name, (ms, n) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"  {ms:8.4f} ms {n:4d}x {ms / n * 1e3:7.1f} us  {name}")


if __name__ == "__main__":
    main()
