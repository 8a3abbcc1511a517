#!/usr/bin/env python3
"""A/B of kiln settings on one exported peers.py model: build time, load time and GPU time per setting.

    python3 bench/env_ab.py --model yolov8n --batch 32 "" KILN_CUDNN_GRAPH=0 "KILN_CUDNN_RUNTIME_FUSION=2"
    python3 bench/env_ab.py --model resnet50 --batch 1 "" KILN_DISABLE_PASSES=nhwc_layout --fp32
    python3 bench/env_ab.py --model bert --batch 1 -- "" "--opt-level=5"   # "--" before settings with options

Each setting is a space-separated list of VAR=VALUE environment assignments ("" = as is;
KILN_BIN=PATH runs another build of kiln: an A/B of code) and `kiln build` options (tokens starting with "--", e.g. "--opt-level=5"), applied to
`kiln build` (FP16 unless --fp32, one profile at the batch) and the environment of
`kiln bench --cuda-graph --no-data-transfers`; the table gives the build's wall clock and
its tactic-timing share, the bench process's wall clock (engine load, first-run plan
and kernel compilation, timing), the GPU compute median, the sum of the timed
layers' picked medians (far below the GPU time: layers without tactics dominate; far
above it: isolated timing misleads), and the GPU's mean SM clock and power and its peak
temperature during the bench (gpu_clocks.py: large batches run at the power cap, where a
hotter GPU clocks lower), and that mean power times the GPU time: the energy an inference
takes, which is what sets the time at the cap (session 28: removing ~100 us of idle moved
ViT bs256 nothing). Runs on the GPU machine
after bench/gpu.sh (or any CUDA build) has made build/gpu/kiln.

Differences under ~1% need both orders and one engine: `--balanced` runs the settings
forward and then backward (A B B A) and adds a mean per setting; `--one-engine` builds the
engine once, with the first setting, and benches every setting on it (runtime switches, or
two builds of kiln that read the same engine), so no setting's timing-picked kernels differ
by chance. (Session 19: two builds with the same kernels, the new one first in each pair,
ran BERT bs128 ~55 us apart.)
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
from gpu_clocks import ClockSampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, env, timeout):
    t = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return r, time.time() - t


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("settings", nargs="+", help='environment settings to compare, e.g. "" "KILN_CUDNN_GRAPH=0"')
    p.add_argument("--model", default="yolov8n", help="a peers.py model: " + ",".join(peers.MODELS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--fp32", action="store_true")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--kiln", type=Path, default=ROOT / "build/gpu/kiln")
    p.add_argument("--work", type=Path, default=Path("/tmp/kiln-ab"))
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--balanced", action="store_true", help="run the settings forward, then backward (A B B A)")
    p.add_argument("--one-engine", action="store_true",
                   help="build once with the first setting; bench every setting on that engine")
    p.add_argument("--build-logs", type=Path, default=None,
                   help="write each setting's `kiln build -v` log (every layer's timed candidates) into this folder")
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    name = peers.ALIASES.get(a.model, a.model)
    _, onnx_path = peers.build_model(name, a.work)
    ins, _ = peers.onnx_io(onnx_path)
    example = peers.MODELS[name]["inputs"](a.batch, peers.torch.Generator().manual_seed(0))
    shapes = ",".join(f"{n}:{'x'.join(str(d) for d in example[n].shape)}" for n in ins)
    order = list(a.settings) + (list(reversed(a.settings)) if a.balanced else [])
    if a.one_engine and any(kv.startswith("--") for st in a.settings for kv in st.split()):
        sys.exit("--one-engine builds once: no setting can carry build options (\"--...\")")
    rows = []
    built = None  # (kiln, engine, build s, tactics s, picks) of the one engine
    for setting in order:
        env = dict(os.environ)
        build_args = []
        kiln = a.kiln
        for kv in setting.split():
            if kv.startswith("--"):
                build_args.append(kv)
                continue
            k, _, v = kv.partition("=")
            if k == "KILN_BIN":  # another build of kiln (A/B of code, not of settings)
                kiln = Path(v)
                continue
            env[k] = v
        eng = a.work / f"{name}-ab.kiln"
        if not (a.one_engine and built):
            prec = [] if a.fp32 else ["--fp16"]
            b, build_s = run([str(kiln), "build", str(onnx_path), "-o", str(eng), "--device", "cuda", *prec,
                              "--shapes", shapes, "-v", *build_args], env, a.timeout)
            if a.build_logs:
                a.build_logs.mkdir(parents=True, exist_ok=True)
                (a.build_logs / f"build-{len(rows)}.log").write_text(f"setting: {setting!r}\n" + b.stderr)
            if b.returncode:
                rows.append((setting or "(as is)", f"build failed: {b.stderr.strip().splitlines()[-1][:120]}", "", "",
                             "", "", "", "", ""))
                continue
            tactics = re.search(r"tactics: .*?\(([\d.]+) s\)", b.stderr)
            picks = re.search(r"medians sum to ([\d.]+) ms", b.stderr)
            built = (f"{build_s:.1f}", tactics.group(1) if tactics else "-", picks.group(1) if picks else "-")
        with ClockSampler() as clocks:
            r, bench_s = run([str(kiln), "bench", str(eng), "--shapes", shapes, "--device", "cuda", "--cuda-graph",
                              "--no-data-transfers", "--iterations", str(a.iterations)], env, a.timeout)
        gpu = re.search(r"GPU Compute Time: .*?median = ([\d.]+) ms", r.stdout)
        lat = re.search(r"Latency: .*?median = ([\d.]+) ms", r.stdout)
        build_col, tactics_col, picks_col = ("(one engine)", "-", built[2]) if a.one_engine and rows else built
        watts = clocks.mean(1)
        # At the power cap the clock follows the energy an inference takes: compare this, not only the time.
        energy = f"{watts * float(gpu.group(1)):.0f}" if gpu and watts else "-"
        rows.append((setting or "(as is)", build_col, tactics_col, f"{bench_s:.1f}",
                     gpu.group(1) if gpu else f"bench failed: {r.stderr.strip()[-120:]}", lat.group(1) if lat else "-",
                     picks_col, clocks.summary(), energy))
    print(f"\n{name} bs{a.batch} {'fp32' if a.fp32 else 'fp16'}")
    print("| setting | build s | tactic timing s | bench process s | GPU compute median ms | host latency median ms "
          "| timed picks sum ms | bench's GPU clock, power, peak temperature | mJ an inference (W x GPU ms) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if a.balanced or len(rows) > len(set(a.settings)):
        print("\n| setting | GPU compute medians ms | mean | host latency medians ms | mean |")
        print("|---|---|---|---|---|")
        for setting in dict.fromkeys(r[0] for r in rows):
            got = [r for r in rows if r[0] == setting]
            cols = []
            for i in (4, 5):
                vals = [float(r[i]) for r in got if re.fullmatch(r"[\d.]+", r[i])]
                cols += [", ".join(f"{v:.4f}" for v in vals), f"{sum(vals) / len(vals):.4f}" if vals else "-"]
            print(f"| {setting} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
