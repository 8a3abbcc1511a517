#!/usr/bin/env python3
"""Model sweep: does kiln run the models people export, and does it match onnxruntime?

Runs on the GPU machine (see docs/models.md and ../shared/GPU.md):

    OUT=/tmp/sweep python3 bench/model_sweep.py --device cuda
    python3 bench/model_sweep.py --device cpu --kiln build/release/kiln --models resnet18,bert   # a dry run

With random weights (seed 0), exports a spread of torchvision classifiers and detectors,
timm models, a YOLOv8n-architecture detector (bench/peers.py) and Hugging Face encoders
and decoders, each at opset 17 and at the newest opset the TorchScript exporter accepts
(dynamo=False). For every model x opset: onnxruntime (CPU) gives the reference on one
fixed random input; then `kiln inspect --report-only --json`, `kiln build --no-tf32` (FP32)
and `kiln run`, and every output is compared: max|kiln - ort| / max|ort| <= --tol (1e-4).

Each export and onnxruntime run happens in a child process (a crash or a hang there is
one row's failure, not the sweep's); each kiln command has a timeout. Every row gets one
status: pass, mismatch, kiln-unsupported, build-error, run-error, export-error, ort-error
(or skipped). models.md and models.json in --out are rewritten after every row, so a
run cut short still leaves its results.
"""
import argparse
import datetime
import gc
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import peers  # noqa: E402  (model definitions, logging, kiln helpers)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ROOT = BENCH.parent
log = peers.log
first_line = peers.first_line
sanitize = peers.sanitize

SEQ = 32          # token count of the text models
VOCAB_IDS = 1000  # token ids are drawn from 0..999
DET_HW = 320      # detector input size
YOLO_HW = 320


# ----------------------------------------------------------------------------------------
# Models: each spec has family, make() -> nn.Module (eval, random weights), inputs(gen) ->
# {name: tensor}, outputs (names given to the exporter), min_opset, and data_dependent
# (outputs whose shape depends on the values, e.g. detections after NMS).


def tv(name, **kw):
    def make():
        import torchvision
        return getattr(torchvision.models, name)(weights=None, **kw)
    return make


def tv_det(name, **kw):
    def make():
        import torchvision
        m = getattr(torchvision.models.detection, name)(weights=None, weights_backbone=None, **kw)
        return Detections(m)
    return make


class Detections(nn.Module):
    """A torchvision detector on one image tensor [1, 3, H, W]: boxes, scores and labels."""

    def __init__(s, m):
        super().__init__()
        s.m = m

    def forward(s, images):
        o = s.m([images[0]])[0]
        return o["boxes"], o["scores"], o["labels"]


def timm_model(name):
    def make():
        import timm
        return timm.create_model(name, pretrained=False)
    return make


def timm_inputs(name):
    def make(gen):
        hw = 224
        try:
            import timm
            cfg = timm.get_pretrained_cfg(name)
            size = getattr(cfg, "input_size", None) if cfg is not None else None
            hw = int(size[-1]) if size else 224
        except Exception:
            pass
        return {"input": torch.randn(1, 3, hw, hw, generator=gen)}
    return make


def image_inputs(hw):
    def make(gen):
        return {"input": torch.randn(1, 3, hw, hw, generator=gen)}
    return make


def text_inputs(mask=True):
    def make(gen):
        d = {"input_ids": torch.randint(0, VOCAB_IDS, (1, SEQ), generator=gen, dtype=torch.int64)}
        if mask:
            d["attention_mask"] = torch.ones(1, SEQ, dtype=torch.int64)
        return d
    return make


class LastHidden(nn.Module):
    """A Hugging Face model returning last_hidden_state only (no pooler, no cache)."""

    def __init__(s, m, mask=True):
        super().__init__()
        s.m, s.mask = m, mask

    def forward(s, input_ids, attention_mask=None):
        kw = {"attention_mask": attention_mask} if s.mask else {}
        return s.m(input_ids=input_ids, **kw).last_hidden_state


def hf(cls_name, cfg_name, mask=True, **cfg_kw):
    """make(attn=None): attn='eager' rebuilds with plain attention (the retry when the
    default (SDPA) attention does not export)."""
    def make(attn=None):
        import transformers
        kw = dict(cfg_kw)
        if attn:
            kw["attn_implementation"] = attn
        cfg = getattr(transformers, cfg_name)(**kw)
        return LastHidden(getattr(transformers, cls_name)(cfg), mask)
    return make


def make_bert(attn=None):
    return LastHidden(peers.make_bert(attn).m)


def make_yolo():
    return peers.YOLOv8n()


IMG = image_inputs(224)
MODELS = {
    # torchvision classifiers
    "resnet18": dict(family="torchvision", make=tv("resnet18"), inputs=IMG),
    "mobilenet_v3_small": dict(family="torchvision", make=tv("mobilenet_v3_small"), inputs=IMG),
    "efficientnet_b0": dict(family="torchvision", make=tv("efficientnet_b0"), inputs=IMG),
    "regnet_y_400mf": dict(family="torchvision", make=tv("regnet_y_400mf"), inputs=IMG),
    "convnext_tiny": dict(family="torchvision", make=tv("convnext_tiny"), inputs=IMG),
    "densenet121": dict(family="torchvision", make=tv("densenet121"), inputs=IMG),
    "squeezenet1_1": dict(family="torchvision", make=tv("squeezenet1_1"), inputs=IMG),
    "shufflenet_v2_x1_0": dict(family="torchvision", make=tv("shufflenet_v2_x1_0"), inputs=IMG),
    "vit_b_16": dict(family="torchvision", make=peers.make_vit, inputs=IMG),
    "swin_t": dict(family="torchvision", make=tv("swin_t"), inputs=IMG),
    # torchvision detectors (NMS inside: the number of detections depends on the values). Score thresholds 0:
    # random class scores sit near 1/91, under the default 0.05, which would leave nothing to compare.
    "ssdlite320_mobilenet_v3_large": dict(family="torchvision-det", make=tv_det("ssdlite320_mobilenet_v3_large"),
                                          inputs=image_inputs(DET_HW), outputs=["boxes", "scores", "labels"],
                                          min_opset=11, data_dependent=True),
    "fasterrcnn_mobilenet_v3_large_320_fpn": dict(
        family="torchvision-det", make=tv_det("fasterrcnn_mobilenet_v3_large_320_fpn", box_score_thresh=0.0),
        inputs=image_inputs(DET_HW), outputs=["boxes", "scores", "labels"], min_opset=11, data_dependent=True),
    "retinanet_resnet50_fpn": dict(family="torchvision-det", make=tv_det("retinanet_resnet50_fpn", score_thresh=0.0),
                                   inputs=image_inputs(DET_HW), outputs=["boxes", "scores", "labels"],
                                   min_opset=11, data_dependent=True, optional=True),
    # timm (pretrained=False)
    "timm/resnet50d": dict(family="timm", make=timm_model("resnet50d"), inputs=timm_inputs("resnet50d")),
    "timm/efficientnet_b0": dict(family="timm", make=timm_model("efficientnet_b0"),
                                 inputs=timm_inputs("efficientnet_b0")),
    "timm/deit_tiny_patch16_224": dict(family="timm", make=timm_model("deit_tiny_patch16_224"),
                                       inputs=timm_inputs("deit_tiny_patch16_224")),
    "timm/convnext_atto": dict(family="timm", make=timm_model("convnext_atto"), inputs=timm_inputs("convnext_atto")),
    "timm/mobilevitv2_050": dict(family="timm", make=timm_model("mobilevitv2_050"),
                                 inputs=timm_inputs("mobilevitv2_050")),
    # Ultralytics-style YOLO (bench/peers.py: raw head output, no decoding)
    "yolov8n": dict(family="yolo", make=make_yolo, inputs=image_inputs(YOLO_HW)),
    # Hugging Face (transformers): encoders and a decoder, last_hidden_state
    "bert": dict(family="hf", make=make_bert, inputs=text_inputs(), outputs=["last_hidden_state"]),
    "distilbert": dict(family="hf", make=hf("DistilBertModel", "DistilBertConfig"), inputs=text_inputs(),
                       outputs=["last_hidden_state"]),
    "roberta": dict(family="hf", make=hf("RobertaModel", "RobertaConfig"), inputs=text_inputs(),
                    outputs=["last_hidden_state"]),
    "gpt2": dict(family="hf", make=hf("GPT2Model", "GPT2Config", n_layer=2, use_cache=False), inputs=text_inputs(),
                 outputs=["last_hidden_state"]),
    "t5_encoder": dict(family="hf", make=hf("T5EncoderModel", "T5Config", num_layers=2, use_cache=False),
                       inputs=text_inputs(), outputs=["last_hidden_state"]),
}
for _s in MODELS.values():
    _s.setdefault("outputs", ["output"])
    _s.setdefault("min_opset", 1)
    _s.setdefault("data_dependent", False)
FAMILIES = sorted({s["family"] for s in MODELS.values()})


# ----------------------------------------------------------------------------------------
# Child process: export one model at one opset, run onnxruntime, save inputs and reference.


def newest_opset():
    """The highest opset torch.onnx's TorchScript exporter (dynamo=False) accepts: tries 20, 19, 18.
    An opset it only warns about ('is not supported') counts as refused."""
    m = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.LayerNorm(4)).eval()
    for op in (20, 19, 18):
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                torch.onnx.export(m, (torch.randn(1, 4),), io.BytesIO(), opset_version=op, dynamo=False)
            if any("is not supported" in str(x.message) for x in w):
                continue
            return op
        except Exception:
            continue
    return 17


def calibrate_bn(model, spec, inputs, gen):
    """Random weights with BatchNorm's initial statistics (mean 0, var 1) let activations shrink layer after
    layer (torchvision's MobileNetV3 detectors reach 1e-13): the output then hardly depends on the input and a
    wrong kernel could still "match". Sets each BatchNorm's statistics from 2 random batches of 4 images, as
    training would, so that activations stay near unit scale. Returns the number of BatchNorm layers."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    x = inputs.get("input")
    if not bns or x is None or not x.is_floating_point():
        return 0
    saved = [b.momentum for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average over the calibration batches
        b.train()
    try:
        with torch.no_grad():
            for _ in range(2):
                xb = torch.randn(4, *x.shape[1:], generator=gen)
                if isinstance(model, Detections):
                    model.m(list(xb))
                else:
                    model(xb)
    finally:
        for b, m in zip(bns, saved):
            b.momentum = m
        model.eval()
    return len(bns)


def input_sensitivity(model, spec, inputs, gen):
    """max|f(x) - f(x')| / max|f(x)| over the outputs for a second random input x' (None when the shapes differ)."""
    other = {k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else
                 torch.randint(0, VOCAB_IDS, v.shape, generator=gen, dtype=v.dtype) if k == "input_ids" else v)
             for k, v in inputs.items()}
    with torch.no_grad():
        a, b = model(*inputs.values()), model(*other.values())
    a = a if isinstance(a, (tuple, list)) else [a]
    b = b if isinstance(b, (tuple, list)) else [b]
    worst = 0.0
    for u, v in zip(a, b):
        if u.shape != v.shape:
            return None
        if u.numel() == 0:
            continue
        u, v = u.double(), v.double()
        den = u.abs().max().item()
        worst = max(worst, (u - v).abs().max().item() / den if den > 0 else (0.0 if v.abs().max() == 0 else 1.0))
    return worst


def export(model, inputs, outputs, path, opset):
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha else None
    if mha:
        mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused path has no ONNX export
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, tuple(inputs.values()), str(path), input_names=list(inputs),
                              output_names=outputs, opset_version=opset, do_constant_folding=True, dynamo=False)
    finally:
        if mha:
            mha.set_fastpath_enabled(fast)


def worker(a):
    """Writes DIR/export.json: status ok / export-error / ort-error, error, notes, nodes, inputs, outputs;
    DIR/in-*.npy and DIR/ref-*.npy."""
    spec = MODELS[a.worker]
    d = a.work_dir
    d.mkdir(parents=True, exist_ok=True)
    res = {"status": "export-error", "error": None, "notes": []}

    def save():
        (d / "export.json").write_text(json.dumps(res, indent=1) + "\n")

    save()
    torch.set_grad_enabled(False)
    path = d / "model.onnx"
    inputs = spec["inputs"](torch.Generator().manual_seed(0))
    t = time.time()
    try:
        torch.manual_seed(0)
        model = spec["make"]().eval()
        res["bn_calibrated"] = calibrate_bn(model, spec, inputs, torch.Generator().manual_seed(1))
        try:
            export(model, inputs, spec["outputs"], path, a.opset)
        except Exception as e:
            if spec["family"] != "hf":
                raise
            # Some transformers versions trace SDPA attention badly: the same weights, plain attention.
            log(f"export failed ({type(e).__name__}: {first_line(e)}); retrying with attn_implementation='eager'")
            plain = spec["make"]("eager").eval()
            plain.load_state_dict(model.state_dict())
            export(plain, inputs, spec["outputs"], path, a.opset)
            res["notes"].append("eager attention (SDPA did not export)")
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {first_line(e)}"
        log(f"export failed:\n{traceback.format_exc()}")
        save()
        return 0
    res["export_s"] = round(time.time() - t, 1)
    try:
        sens = input_sensitivity(model, spec, inputs, torch.Generator().manual_seed(2))
        res["input_sensitivity"] = sens
        if sens is not None and sens < 1e-3:
            res["notes"].append(f"weak check: the output hardly depends on the input (change {sens:.1e})")
    except Exception as e:
        log(f"input sensitivity check failed: {type(e).__name__}: {first_line(e)}")
    res["mib"] = round(path.stat().st_size / 2**20, 1)
    try:
        import onnx
        m = onnx.load(str(path), load_external_data=False)
        inits = {i.name for i in m.graph.initializer}
        res["inputs"] = [i.name for i in m.graph.input if i.name not in inits]
        res["outputs"] = [o.name for o in m.graph.output]
        res["nodes"] = len(m.graph.node)
        res["opset_import"] = {o.domain or "ai.onnx": o.version for o in m.opset_import}
        del m
    except Exception as e:
        res["error"] = f"onnx.load: {type(e).__name__}: {first_line(e)}"
        save()
        return 0
    res["status"] = "ort-error"
    feeds = {}
    for n in res["inputs"]:
        if n not in inputs:
            res["error"] = f"the exported model has an input {n!r} the sweep does not feed"
            save()
            return 0
        feeds[n] = inputs[n].numpy()
        np.save(d / f"in-{sanitize(n)}.npy", feeds[n])
    res["input_shapes"] = {n: list(v.shape) for n, v in feeds.items()}
    save()
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # no approximating fusions
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        t = time.time()
        outs = sess.run(None, feeds)
        res["ort_s"] = round(time.time() - t, 2)
        for n, v in zip([o.name for o in sess.get_outputs()], outs):
            np.save(d / f"ref-{sanitize(n)}.npy", np.asarray(v))
        res["output_shapes"] = {o.name: list(np.asarray(v).shape) for o, v in zip(sess.get_outputs(), outs)}
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {first_line(e)}"
        log(f"onnxruntime failed:\n{traceback.format_exc()}")
        save()
        return 0
    res["status"] = "ok"
    save()
    return 0


# ----------------------------------------------------------------------------------------
# Parent: kiln inspect / build / run and the comparison.


def run_cmd(cmd, timeout, logfile):
    """Returns (rc or None on timeout/start failure, stdout, stderr, seconds); the whole output goes to logfile."""
    cmd = [str(x) for x in cmd]
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""))
        err += f"\ntimed out after {timeout:.0f} s"
        rc = None
    except OSError as e:
        rc, out, err = None, "", f"cannot start {cmd[0]}: {e}"
    secs = time.time() - t
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text(f"$ {shlex.join(cmd)}\n# rc={rc} {secs:.1f} s\n--- stdout\n{out}\n--- stderr\n{err}\n")
    return rc, out, err, secs


def err_line(rc, out, err):
    """The first line of stderr that says 'error', else its first line (a timeout or signal says so)."""
    if rc is None and "timed out after" in err:
        return first_line(err.strip().splitlines()[-1])
    lines = [l for l in err.splitlines() if "error" in l.lower()] or [l for l in err.splitlines() if l.strip()]
    msg = first_line(lines[0] if lines else (out or f"exit status {rc}"))
    if rc is not None and rc < 0:
        msg = f"killed by signal {-rc}: {msg}"
    return msg


def inspect(a, onnx_path, row, logs):
    """Fills row from `kiln inspect --report-only --json`; returns False when kiln reports something unsupported."""
    cmd = [a.kiln, "inspect", onnx_path, "--report-only", "--json", "--device", a.device]
    rc, out, err, _ = run_cmd(cmd, a.timeout, logs / "inspect.log")
    try:
        rep = json.loads(out[out.index("{"):])
    except Exception:
        row["notes"].append(f"inspect gave no report: {err_line(rc, out, err)}")
        return True
    nodes = {n["index"]: n for n in rep.get("nodes", [])}
    row["kiln_nodes"] = rep.get("num_nodes")
    bad = [nodes.get(i, {"index": i}) for i in rep.get("unsupported", [])]
    row["unsupported"] = [dict(index=n.get("index"), op=n.get("op_type"), name=n.get("name"), reason=n.get("reason"))
                          for n in bad]
    row["unsupported_ops"] = sorted({n.get("op_type") or "?" for n in bad})
    row["model_problems"] = rep.get("errors", [])
    fb = rep.get("cpu_fallback_on_cuda", [])
    if a.device == "cuda" and fb:
        ops = sorted({nodes[i]["op_type"] for i in fb if i in nodes})
        row["cpu_fallback"] = {"count": len(fb), "ops": ops}
        row["notes"].append(f"{len(fb)} node(s) without a CUDA kernel: {', '.join(ops)}")
    if rep.get("supported", True):
        return True
    if bad:
        n = bad[0]
        row["error"] = f"{n.get('op_type')} (#{n.get('index')} {n.get('name')}): {n.get('reason')}"
        if len(row["unsupported_ops"]) > 1 or len(bad) > 1:
            row["notes"].append(f"{len(bad)} unsupported node(s): {', '.join(row['unsupported_ops'])}")
    else:
        row["error"] = "; ".join(rep.get("errors", [])) or "unsupported (no reason given)"
    return False


def compare(a, spec, exp, d, outdir, row):
    """Compares every kiln output with onnxruntime's; sets status pass / mismatch / run-error."""
    worst, shape_bad = 0.0, []
    per = {}
    for n in exp["outputs"]:
        ref = np.load(d / f"ref-{sanitize(n)}.npy")
        f = outdir / f"{sanitize(n)}.npy"
        if not f.exists():
            row["status"], row["error"] = "run-error", f"kiln run wrote no {f.name}"
            return
        got = np.load(f)
        if tuple(got.shape) != tuple(ref.shape):
            shape_bad.append(f"{n}: kiln {list(got.shape)} vs ort {list(ref.shape)}")
            continue
        if ref.size == 0:
            per[n] = 0.0
            continue
        r64, g64 = ref.astype(np.float64), got.astype(np.float64)
        num = float(np.max(np.abs(g64 - r64)))
        den = float(np.max(np.abs(r64)))
        e = 0.0 if num == 0 else (num / den if den > 0 else float("inf"))
        if np.isnan(num):
            e = float("nan")
        per[n] = e
        if den == 0:
            row["notes"].append(f"{n}: the ort reference is all zeros")
        worst = e if (np.isnan(e) or np.isnan(worst)) else max(worst, e)
    row["per_output_err"] = per
    if not shape_bad and all(np.load(d / f"ref-{sanitize(n)}.npy").size == 0 for n in exp["outputs"]):
        row["notes"].append("empty outputs (no detections): only the shapes were compared")
    if per:
        row["max_rel_err"] = worst
    if shape_bad:
        row["status"] = "mismatch"
        row["error"] = "shape differs: " + "; ".join(shape_bad)
        if spec["data_dependent"]:
            row["notes"].append("data-dependent outputs (detections after NMS)")
        return
    row["status"] = "pass" if worst <= a.tol else "mismatch"  # NaN fails
    if row["status"] == "mismatch":
        bad = [n for n, e in per.items() if not e <= a.tol]
        row["error"] = f"max rel err {worst:.2e} > {a.tol:g} ({', '.join(bad)})"


def sweep_row(a, name, opset, row):
    spec = MODELS[name]
    tag = f"{sanitize(name.replace('/', '-'))}-op{opset}"
    d = a.work / tag
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    logs = a.out / "logs" / tag
    # 1. export + onnxruntime in a child process
    cmd = [sys.executable, __file__, "--worker", name, "--opset", str(opset), "--work-dir", d]
    rc, out, err, secs = run_cmd(cmd, a.export_timeout, logs / "export.log")
    row["export_s"] = round(secs, 1)
    try:
        exp = json.loads((d / "export.json").read_text())
    except Exception:
        exp = {"status": "export-error", "error": None, "notes": []}
    if rc != 0 and exp["status"] == "ok":
        exp["status"], exp["error"] = "ort-error", None
    for k in ("nodes", "mib", "opset_import", "input_shapes", "output_shapes", "ort_s", "bn_calibrated",
              "input_sensitivity"):
        if k in exp:
            row[k] = exp[k]
    row["notes"] += exp.get("notes", [])
    if exp["status"] != "ok":
        row["status"] = exp["status"]
        row["error"] = exp.get("error") or (f"child process: {err_line(rc, out, err)}" if rc != 0 else "unknown")
        return
    onnx_path = d / "model.onnx"
    try:
        # 2. kiln inspect
        if not inspect(a, onnx_path, row, logs):
            row["status"] = "kiln-unsupported"
            return
        # 3. kiln build (FP32, no TF32)
        eng = d / "model.kiln"
        shapes = ",".join(f"{n}:{'x'.join(str(x) for x in s)}" for n, s in exp["input_shapes"].items())
        build = [a.kiln, "build", onnx_path, "-o", eng, "--device", a.device, "--no-tf32", "--shapes", shapes]
        build += shlex.split(a.kiln_build_args)
        rc, out, err, secs = run_cmd(build, a.timeout, logs / "build.log")
        row["build_s"] = round(secs, 1)
        if rc != 0 or not eng.exists():
            row["status"], row["error"] = "build-error", err_line(rc, out, err)
            return
        # 4. kiln run
        outdir = d / "kiln-out"
        outdir.mkdir()
        run = [a.kiln, "run", eng, "--device", a.device, "--output-dir", outdir, "--print", "0"]
        for n in exp["input_shapes"]:
            run += ["--input", f"{n}={d / f'in-{sanitize(n)}.npy'}"]
        rc, out, err, secs = run_cmd(run, a.timeout, logs / "run.log")
        row["run_s"] = round(secs, 1)
        if rc != 0:
            row["status"], row["error"] = "run-error", err_line(rc, out, err)
            return
        # 5. compare
        compare(a, spec, exp, d, outdir, row)
    finally:
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# Report


def render(rows, meta):
    head = ["model", "family", "opset", "nodes", "status", "max rel err", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        err = r.get("max_rel_err")
        note = "; ".join(([r["error"]] if r.get("error") else []) + r.get("notes", []))
        cells = [r["model"], r["family"], str(r["opset"]), str(r.get("nodes", "—")), r["status"],
                 "—" if err is None else f"{err:.2e}", note.replace("\n", " ")[:400]]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    out = [f"# kiln model sweep ({meta['started']})", "",
           f"- command: `{meta['command']}`",
           f"- device: {meta['device']} (kiln --device {meta['kiln_device']}); torch {meta['torch']}, "
           f"onnx {meta['onnx']}, onnxruntime {meta['onnxruntime']}, torchvision {meta['torchvision']}, "
           f"timm {meta['timm']}, transformers {meta['transformers']}; {meta['kiln_version']}",
           f"- opsets: {', '.join(str(o) for o in meta['opsets'])} (newest the TorchScript exporter accepts: "
           f"{meta['newest_opset']})",
           f"- random weights (seed 0), batch 1, one random input (seed 0; token ids 0..{VOCAB_IDS - 1}, "
           f"sequence {SEQ}); reference: onnxruntime CPU (basic graph optimizations); kiln FP32 (`--no-tf32`); "
           f"max rel err = max over outputs of max|kiln - ort| / max|ort|; pass when <= {meta['tol']:g}",
           f"- {len(rows)} rows: {summary}" if rows else "- no rows yet",
           "", *lines]
    return "\n".join(out) + "\n"


def write_report(a, rows, meta):
    md = render(rows, meta)
    (a.out / "models.md").write_text(md)
    (a.out / "models.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    return md


def version_of(mod):
    try:
        return __import__(mod).__version__
    except Exception:
        return "absent"


# ----------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="kiln --device")
    p.add_argument("--kiln", type=Path, default=ROOT / "build/gpu/kiln")
    p.add_argument("--models", default="all", help="comma separated names or families (" + ", ".join(FAMILIES)
                   + "), or 'all' (every model except the optional ones: add them by name, or 'all+'); known: "
                   + ", ".join(MODELS))
    p.add_argument("--opsets", default="17,newest", help="comma separated opsets; 'newest' is the highest the "
                   "TorchScript exporter accepts")
    p.add_argument("--budget", type=float, default=0, help="start no new model after this many seconds (0: none)")
    p.add_argument("--work", type=Path, default=Path("/tmp/kiln-sweep"))
    p.add_argument("--out", type=Path, default=None, help="report folder (default $OUT, else --work)")
    p.add_argument("--tol", type=float, default=1e-4, help="max|kiln - ort| / max|ort| to pass")
    p.add_argument("--timeout", type=float, default=300, help="seconds allowed to each kiln command")
    p.add_argument("--export-timeout", type=float, default=900, help="seconds allowed to one export + ort run")
    p.add_argument("--kiln-build-args", default="", help="extra arguments to `kiln build`")
    p.add_argument("--merge", type=Path, default=None, help="an earlier models.json: its rows for the models and "
                   "opsets not run now are kept (to join runs split by --models)")
    p.add_argument("--keep", action="store_true", help="keep each row's ONNX file, engine and outputs in --work")
    # internal: the child process that exports one model
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--opset", type=int, help=argparse.SUPPRESS)
    p.add_argument("--work-dir", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return a
    names = []
    for m in [x.strip() for x in a.models.split(",") if x.strip()]:
        if m in ("all", "all+"):
            names += [n for n, s in MODELS.items() if m == "all+" or not s.get("optional")]
        elif m in FAMILIES:
            names += [n for n, s in MODELS.items() if s["family"] == m and not s.get("optional")]
        elif m in MODELS or f"timm/{m}" in MODELS and m not in MODELS:
            names.append(m if m in MODELS else f"timm/{m}")
        else:
            p.error(f"unknown model {m!r} (known: {', '.join(MODELS)}; families: {', '.join(FAMILIES)})")
    a.models = list(dict.fromkeys(names))
    a.opsets = [x.strip() for x in a.opsets.split(",") if x.strip()]
    for o in a.opsets:
        if o != "newest" and not o.isdigit():
            p.error(f"--opsets: {o!r} is neither a number nor 'newest'")
    a.kiln = a.kiln.resolve()
    env_out = os.environ.get("OUT")
    a.out = a.out or (Path(env_out) if env_out else a.work)
    return a


def main():
    a = parse_args()
    if a.worker:
        sys.exit(worker(a))
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    if not a.kiln.exists():
        log(f"warning: {a.kiln} does not exist (build it: bash bench/gpu.sh); every kiln step will fail")
    try:
        kv = subprocess.run([str(a.kiln), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:
        kv = f"kiln --version failed: {first_line(e)}"
    newest = newest_opset()
    log(f"newest opset the TorchScript exporter (dynamo=False) accepts: {newest}")
    opsets = []
    for o in a.opsets:
        v = newest if o == "newest" else int(o)
        if v not in opsets:
            opsets.append(v)
    dev_name = "cpu"
    if a.device == "cuda":
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True, timeout=30)
            dev_name = first_line(r.stdout) if r.returncode == 0 else "cuda (nvidia-smi failed)"
        except Exception:
            dev_name = "cuda (no nvidia-smi)"
    meta = {"started": f"{datetime.datetime.now():%Y-%m-%d %H:%M}", "command": shlex.join(sys.argv),
            "device": dev_name, "kiln_device": a.device, "kiln_version": kv or "kiln (no version)",
            "kiln": str(a.kiln), "torch": torch.__version__, "onnx": version_of("onnx"),
            "onnxruntime": version_of("onnxruntime"), "torchvision": version_of("torchvision"),
            "timm": version_of("timm"), "transformers": version_of("transformers"), "newest_opset": newest,
            "opsets": opsets, "tol": a.tol, "args": {k: str(v) for k, v in vars(a).items()}}
    log(f"{dev_name}, torch {torch.__version__}, {meta['kiln_version']}; {len(a.models)} models x opsets "
        f"{opsets}; work {a.work}, report {a.out}")
    have_timm = meta["timm"] != "absent"
    rows = []
    if a.merge:
        try:
            now = {(n, o) for n in a.models for o in opsets}
            old = json.loads(a.merge.read_text())["rows"]
            rows = [r for r in old if (r["model"], r["opset"]) not in now]
            log(f"kept {len(rows)} of {len(old)} rows from {a.merge}")
        except Exception as e:
            log(f"warning: cannot merge {a.merge}: {type(e).__name__}: {first_line(e)}")
    for name in a.models:
        spec = MODELS[name]
        over = a.budget and time.time() - peers.T0 > a.budget
        for opset in opsets:
            row = {"model": name, "family": spec["family"], "opset": opset, "status": "skipped", "notes": []}
            rows.append(row)
            if over:
                row["error"] = "budget"
            elif opset < spec["min_opset"]:
                row["error"] = f"needs opset >= {spec['min_opset']}"
            elif spec["family"] == "timm" and not have_timm:
                row["error"] = "timm is not installed"
            else:
                log(f"--- {name} opset {opset}")
                t = time.time()
                try:
                    sweep_row(a, name, opset, row)
                except Exception as e:  # a bug of the sweep itself: one row's failure
                    row["status"] = row["status"] if row["status"] != "skipped" else "sweep-error"
                    row["error"] = f"sweep: {type(e).__name__}: {first_line(e)}"
                    log(traceback.format_exc())
                row["total_s"] = round(time.time() - t, 1)
                err = row.get("max_rel_err")
                log(f"{name} opset {opset}: {row['status']}"
                    + (f" (max rel err {err:.2e})" if err is not None else "")
                    + (f": {row['error']}" if row.get("error") else "")
                    + (f" [{'; '.join(row['notes'])}]" if row["notes"] else "") + f" ({row['total_s']} s)")
            write_report(a, rows, meta)
        gc.collect()
    md = write_report(a, rows, meta)
    print()
    print(md)
    log(f"wrote {a.out / 'models.md'} and {a.out / 'models.json'}")


if __name__ == "__main__":
    main()
