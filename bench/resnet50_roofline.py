#!/usr/bin/env python3
"""Per-layer roofline of ResNet-50 (torchvision's, 224x224) for an engine that runs each
convolution as one kernel: what issue 6's ResNet-50 batch-256 row can reach without fusing
across convolutions or storing activations in fewer bits.

    python3 bench/resnet50_roofline.py [--batch 256] [--bytes 2] [--fp16-tflops 718] [--tbps 2.86]

Each conv (bias / folded BatchNorm, ReLU and the bottleneck's residual add fused into it, as
kiln's engines run them) reads its input once, writes its output once, reads the residual once
and its weights once; its time is at least max(bytes / bandwidth, FLOPs / matmul rate), and
the network's floor is the sum over the convs and the max pool. bench/floors.py's memory floor
is lower: it assumes every activation stays on chip. Defaults are ../shared/GPU.md's measured
H100 ceilings (fp16 8192^3 matmul 718 TFLOP/s, device-to-device copy 2.86 TB/s). No GPU,
no PyTorch.
"""
import argparse


def layers(batch, e):
    """(name, bytes, flops) of every conv and the max pool."""
    out = []

    def conv(name, h, w, cin, cout, k, s, res=False):
        ho, wo = (h + s - 1) // s, (w + s - 1) // s
        moved = batch * (h * w * cin + ho * wo * cout * (2 if res else 1)) * e + k * k * cin * cout * e
        out.append((name, moved, 2 * batch * ho * wo * cout * cin * k * k))
        return ho, wo

    conv("stem 7x7", 224, 224, 3, 64, 7, 2)
    out.append(("max pool", batch * (112 * 112 + 56 * 56) * 64 * e, 0))
    h = w = 56
    cin = 64
    for st, (blocks, mid, cout, stride) in enumerate([(3, 64, 256, 1), (4, 128, 512, 2), (6, 256, 1024, 2),
                                                      (3, 512, 2048, 2)], start=1):
        for i in range(blocks):
            s = stride if i == 0 else 1
            if i == 0:
                conv(f"layer{st}.0 downsample", h, w, cin, cout, 1, s)
            conv(f"layer{st}.{i} conv1", h, w, cin, mid, 1, 1)
            h2, w2 = conv(f"layer{st}.{i} conv2", h, w, mid, mid, 3, s)
            conv(f"layer{st}.{i} conv3", h2, w2, mid, cout, 1, 1, res=True)
            h, w, cin = h2, w2, cout
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--bytes", type=int, default=2, help="bytes an activation element (2: FP16, 1: INT8/FP8)")
    p.add_argument("--fp16-tflops", type=float, default=718.0)
    p.add_argument("--tbps", type=float, default=2.86)
    a = p.parse_args()
    rows = layers(a.batch, a.bytes)
    t = [(n, b / (a.tbps * 1e12) * 1e3, f / (a.fp16_tflops * 1e12) * 1e3) for n, b, f in rows]
    print("| stage | GB moved | GFLOP | bytes ms | FLOPs ms | roofline ms |")
    print("|---|---|---|---|---|---|")
    for stage in ["stem", "max pool", "layer1", "layer2", "layer3", "layer4"]:
        sel = [i for i, r in enumerate(rows) if r[0].startswith(stage)]
        print(f"| {stage} | {sum(rows[i][1] for i in sel) / 1e9:.2f} | {sum(rows[i][2] for i in sel) / 1e9:.0f} | "
              f"{sum(t[i][1] for i in sel):.2f} | {sum(t[i][2] for i in sel):.2f} | "
              f"{sum(max(t[i][1], t[i][2]) for i in sel):.2f} |")
    roof = sum(max(b, f) for _, b, f in t)
    print(f"\nbatch {a.batch}: per-layer roofline {roof:.2f} ms = {a.batch / roof * 1e3 / 1e3:.1f}k img/s "
          f"(bytes alone {sum(b for _, b, _ in t):.2f} ms, FLOPs alone {sum(f for *_, f in t):.2f} ms)")


if __name__ == "__main__":
    main()
