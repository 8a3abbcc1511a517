#!/usr/bin/env python3
"""Exports reduced-depth twins of peers.py's transformer models for pass probes on a
machine without torch: the same exporter and opset as peers.py, two layers instead of
twelve, a 1,000-token vocabulary and constant weights, so the files compress to a
few hundred KB (the graph around and inside a layer is the same; the numbers are not
meant to be checked). Run on the GPU machine; bring the .onnx files back (xz them).

    python3 bench/probe_models.py OUT_DIR
"""
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402


def small_bert(attn=None):
    from transformers import BertConfig, BertModel
    kw = {"attn_implementation": attn} if attn else {}
    cfg = BertConfig(num_hidden_layers=2, vocab_size=1000, **kw)
    return peers.BertLastHidden(BertModel(cfg, add_pooling_layer=False))


def small_vit():
    import torchvision
    m = torchvision.models.VisionTransformer(image_size=224, patch_size=16, num_layers=2, num_heads=12,
                                             hidden_dim=768, mlp_dim=3072)
    nn.init.normal_(m.heads.head.weight, std=0.02)
    return m


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "probe_models")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    bert_spec = peers.MODELS["bert"]
    bert_spec["inputs"] = lambda b, gen: {  # ids within the small vocabulary
        "input_ids": torch.randint(0, 1000, (b, 128), generator=gen, dtype=torch.int64),
        "attention_mask": torch.ones(b, 128, dtype=torch.int64)}
    for name, make in (("bert", small_bert), ("vit_b_16", small_vit)):
        path = out / f"{name}_2layer.onnx"
        model = make().eval()
        with torch.no_grad():  # constant weights, distinct per tensor (the exporter merges equal
            for i, prm in enumerate(model.parameters()):  # ones): the files compress to almost nothing
                prm.fill_(0.01 + 1e-4 * i)
        try:
            peers.export_onnx(name, model, path)
        except Exception as e:  # as peers.build_model does for BERT
            print(f"{name}: {e}; retrying with eager attention")
            plain = small_bert("eager").eval()
            plain.load_state_dict(model.state_dict())
            peers.export_onnx(name, plain, path)
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
