#!/usr/bin/env python3
"""Physical floors of the peers.py rows: FLOPs over the measured matmul rate, bytes over the
measured copy bandwidth (issue 6 asks for them where a target is missed).

    python3 bench/floors.py [--models resnet50,bert] [--fp16-tflops 718] [--tbps 2.86]

FLOPs come from torch.utils.flop_counter on one batch-1 forward on the CPU (matmuls,
convolutions, attention; elementwise work is not counted), scaled by the batch. The byte
floor is the weights once (2 bytes each in FP16 rows) plus the model's inputs and outputs:
what any engine must move, with every activation kept on chip. Defaults are the ceilings
../shared/GPU.md measured on the H100 (fp16 8192^3 matmul 718 TFLOP/s, device-to-device copy
2.86 TB/s). Needs PyTorch (no GPU).
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,bert,vit_b_16,yolov8n")
    p.add_argument("--fp16-tflops", type=float, default=718.0)
    p.add_argument("--tbps", type=float, default=2.86)
    a = p.parse_args()
    print("| model | batch | GFLOP | MB moved (FP16) | compute floor ms | memory floor ms | floor ms | floor rate |")
    print("|---|---|---|---|---|---|---|---|")
    for name in a.models.split(","):
        name = peers.ALIASES.get(name, name)
        spec = peers.MODELS[name]
        model = spec["make"]().eval()
        params = sum(t.numel() for t in model.parameters())
        example = spec["inputs"](1, torch.Generator().manual_seed(0))
        # Counted ops only: MultiheadAttention's fused fast path and the CPU SDPA kernels are
        # invisible to the counter, so attention runs as plain matmuls here.
        mha = getattr(torch.backends, "mha", None)
        if mha:
            mha.set_fastpath_enabled(False)
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
            out = model(*example.values())
        flops1 = fc.get_total_flops()
        outs = out if isinstance(out, (tuple, list)) else [getattr(out, "last_hidden_state", out)]
        io1 = sum(t.numel() * 4 for t in example.values()) + sum(o.numel() * 4 for o in outs if torch.is_tensor(o))
        for b in spec["batches"]:
            flops = flops1 * b
            nbytes = params * 2 + io1 * b
            t_c = flops / (a.fp16_tflops * 1e12) * 1e3
            t_m = nbytes / (a.tbps * 1e12) * 1e3
            floor = max(t_c, t_m)
            print(f"| {name} | {b} | {flops / 1e9:.1f} | {nbytes / 1e6:.1f} | {t_c:.4f} | {t_m:.4f} | {floor:.4f} | "
                  f"{b / floor * 1e3:,.0f} {spec['unit']} |")


if __name__ == "__main__":
    main()
