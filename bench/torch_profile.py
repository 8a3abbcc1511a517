#!/usr/bin/env python3
"""PyTorch eager's CUDA kernels for a peers.py model: what the peer spends its time on.

    python3 bench/torch_profile.py --model yolov8n --batch 32 [--fp32] [--top 25]

Runs the model as peers.py times it (eval, FP16 unless --fp32, TF32 allowed for FP32,
channels-last for CNNs, inputs on the device), profiles 5 iterations with torch.profiler and prints the kernels
by GPU time per iteration, with launch counts. Compare with bench/profile_layers.py,
which gives kiln's per-layer times for the same model and batch. Runs on the GPU machine.
"""
import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

torch = peers.torch


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolov8n", help="a peers.py model: " + ",".join(peers.MODELS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--fp32", action="store_true")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--no-tf32", action="store_true", help="FP32 without TF32 (peers.py times FP32 with TF32)")
    a = p.parse_args()
    peers.set_tf32(not a.no_tf32)
    name = peers.ALIASES.get(a.model, a.model)
    spec = peers.MODELS[name]
    torch.manual_seed(0)
    model = spec["make"]().eval()
    if not a.fp32:
        model = model.half()
    if spec["cnn"]:
        model = model.to(memory_format=torch.channels_last)
    model = model.cuda()
    inputs = {}
    for k, v in spec["inputs"](a.batch, torch.Generator().manual_seed(0)).items():
        v = v.cuda()
        if v.is_floating_point() and not a.fp32:
            v = v.half()
        if spec["cnn"] and v.dim() == 4:
            v = v.contiguous(memory_format=torch.channels_last)
        inputs[k] = v
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        for _ in range(5):
            model(*inputs.values())
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(a.iterations):
                model(*inputs.values())
            torch.cuda.synchronize()
    per_kernel = collections.defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = getattr(e, "device_time_total", None)
        if us is None:
            us = e.cuda_time_total
        entry = per_kernel[e.name[:110]]
        entry[0] += us
        entry[1] += 1
    n = a.iterations
    total_ms = sum(v[0] for v in per_kernel.values()) / n / 1000
    print(f"== torch eager {name} bs{a.batch} {'fp32' if a.fp32 else 'fp16'}: {total_ms:.3f} ms of kernel time "
          f"per iteration, {sum(v[1] for v in per_kernel.values()) // n} launches")
    for k, (us, count) in sorted(per_kernel.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"  {us / n / 1000:8.4f} ms  x{count // n:4d}  {k}")


if __name__ == "__main__":
    main()
