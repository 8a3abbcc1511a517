#!/usr/bin/env python3
"""kiln side by side with PyTorch: eager, torch.compile, torch.compile(mode="reduce-overhead").

Runs on the GPU machine (see ../shared/GPU.md and bench/README.md):

    python3 bench/peers.py --quick          # batches 1 and 32, fewer iterations
    python3 bench/peers.py                  # everything (takes long: use --models/--peers/--budget)

Builds ResNet-50, BERT-base (seq 128), ViT-B/16 and a YOLOv8n-architecture detector
with random weights, exports each to ONNX, then for every model x precision x batch:
builds a kiln engine (min=opt=max=batch), benchmarks it (CUDA graph, no transfers),
checks one output against PyTorch fp32 (TF32 off), and times the PyTorch peers on the
same batch, resident on the device. Writes a Markdown table and the raw rows as JSON
to --out after every row, so a run cut short still leaves its results.
"""
import argparse
import copy
import datetime
import gc
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch import nn


ROOT = Path(__file__).resolve().parents[1]
T0 = time.time()


def log(msg):
    print(f"[{datetime.datetime.now():%H:%M:%S} +{time.time() - T0:5.0f}s] {msg}", flush=True)


def first_line(text, limit=200):
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return str(text).strip()[:limit] or "(no message)"


# ----------------------------------------------------------------------------------------
# YOLOv8n architecture (width 0.25, depth 0.33): Ultralytics' layout, written out here.
# Raw head output [B, 4*16 + 80, 8400] at 640x640; no DFL decoding.


class Conv(nn.Module):
    def __init__(s, c1, c2, k=1, st=1):
        super().__init__()
        s.conv = nn.Conv2d(c1, c2, k, st, k // 2, bias=False)
        s.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        s.act = nn.SiLU()

    def forward(s, x):
        return s.act(s.bn(s.conv(x)))


class Bottleneck(nn.Module):
    def __init__(s, c, shortcut):
        super().__init__()
        s.cv1, s.cv2, s.add = Conv(c, c, 3), Conv(c, c, 3), shortcut

    def forward(s, x):
        y = s.cv2(s.cv1(x))
        return x + y if s.add else y


class C2f(nn.Module):
    def __init__(s, c1, c2, n, shortcut):
        super().__init__()
        s.c = c2 // 2
        s.cv1 = Conv(c1, 2 * s.c, 1)
        s.cv2 = Conv((2 + n) * s.c, c2, 1)
        s.m = nn.ModuleList(Bottleneck(s.c, shortcut) for _ in range(n))

    def forward(s, x):
        y = list(s.cv1(x).chunk(2, 1))
        for m in s.m:
            y.append(m(y[-1]))
        return s.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(s, c1, c2, k=5):
        super().__init__()
        c = c1 // 2
        s.cv1, s.cv2, s.m = Conv(c1, c, 1), Conv(4 * c, c2, 1), nn.MaxPool2d(k, 1, k // 2)

    def forward(s, x):
        y = [s.cv1(x)]
        for _ in range(3):
            y.append(s.m(y[-1]))
        return s.cv2(torch.cat(y, 1))


class Detect(nn.Module):
    def __init__(s, nc=80, ch=(64, 128, 256), reg_max=16):
        super().__init__()
        c2, c3 = max(16, ch[0] // 4, reg_max * 4), max(ch[0], min(nc, 100))
        s.cv2 = nn.ModuleList(nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for c in ch)
        s.cv3 = nn.ModuleList(nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for c in ch)

    def forward(s, xs):
        return torch.cat([torch.cat((a(x), b(x)), 1).flatten(2) for x, a, b in zip(xs, s.cv2, s.cv3)], 2)


class YOLOv8n(nn.Module):
    def __init__(s, nc=80):
        super().__init__()
        s.p3 = nn.Sequential(Conv(3, 16, 3, 2), Conv(16, 32, 3, 2), C2f(32, 32, 1, True),
                             Conv(32, 64, 3, 2), C2f(64, 64, 2, True))
        s.p4 = nn.Sequential(Conv(64, 128, 3, 2), C2f(128, 128, 2, True))
        s.p5 = nn.Sequential(Conv(128, 256, 3, 2), C2f(256, 256, 1, True), SPPF(256, 256))
        s.up = nn.Upsample(scale_factor=2, mode="nearest")
        s.top4, s.out3 = C2f(384, 128, 1, False), C2f(192, 64, 1, False)
        s.down3, s.out4 = Conv(64, 64, 3, 2), C2f(192, 128, 1, False)
        s.down4, s.out5 = Conv(128, 128, 3, 2), C2f(384, 256, 1, False)
        s.detect = Detect(nc, (64, 128, 256))

    def forward(s, x):
        p3 = s.p3(x)
        p4 = s.p4(p3)
        p5 = s.p5(p4)
        t4 = s.top4(torch.cat((s.up(p5), p4), 1))
        o3 = s.out3(torch.cat((s.up(t4), p3), 1))
        o4 = s.out4(torch.cat((s.down3(o3), t4), 1))
        o5 = s.out5(torch.cat((s.down4(o4), p5), 1))
        return s.detect([o3, o4, o5])


# ----------------------------------------------------------------------------------------
# Models


class BertLastHidden(nn.Module):
    def __init__(s, m):
        super().__init__()
        s.m = m

    def forward(s, input_ids, attention_mask):
        return s.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def make_bert(attn=None):
    from transformers import BertConfig, BertModel
    cfg = BertConfig(attn_implementation=attn) if attn else BertConfig()
    return BertLastHidden(BertModel(cfg, add_pooling_layer=False))


def make_vit():
    import torchvision
    m = torchvision.models.vit_b_16(weights=None)
    nn.init.normal_(m.heads.head.weight, std=0.02)  # torchvision zeroes the head: an all-zero output checks nothing
    return m


def image_inputs(hw):
    def make(b, gen):
        return {"input": torch.randn(b, 3, hw, hw, generator=gen)}
    return make


def bert_inputs(b, gen):
    return {"input_ids": torch.randint(0, 30522, (b, 128), generator=gen, dtype=torch.int64),
            "attention_mask": torch.ones(b, 128, dtype=torch.int64)}


MODELS = {
    "resnet50": dict(make=lambda: __import__("torchvision").models.resnet50(weights=None), inputs=image_inputs(224),
                     outputs=["output"], cnn=True, unit="img/s", batches=[1, 32, 256]),
    "bert": dict(make=make_bert, inputs=bert_inputs, outputs=["last_hidden_state"], cnn=False, unit="seq/s",
                 batches=[1, 32, 128]),
    "vit_b_16": dict(make=make_vit, inputs=image_inputs(224),
                     outputs=["output"], cnn=False, unit="img/s", batches=[1, 32, 256]),
    "yolov8n": dict(make=YOLOv8n, inputs=image_inputs(640), outputs=["output"], cnn=True, unit="img/s",
                    batches=[1, 32, 256]),
}
ALIASES = {"resnet": "resnet50", "resnet-50": "resnet50", "vit": "vit_b_16", "vit-b16": "vit_b_16",
           "yolo": "yolov8n", "bert-base": "bert"}
PEERS = ["eager", "compile", "graphs"]


def export_onnx(name, model, path):
    spec = MODELS[name]
    example = spec["inputs"](2, torch.Generator().manual_seed(0))  # batch 2: keeps the batch axis symbolic
    in_names = list(example)
    dyn = {n: {0: "batch"} for n in in_names + spec["outputs"]}
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha else None
    if mha:
        mha.set_fastpath_enabled(False)  # nn.MultiheadAttention's fused path has no ONNX export
    try:
        with torch.no_grad():
            torch.onnx.export(model, tuple(example.values()), str(path), input_names=in_names,
                              output_names=spec["outputs"], dynamic_axes=dyn, opset_version=17,
                              do_constant_folding=True, dynamo=False)
    finally:
        if mha:
            mha.set_fastpath_enabled(fast)


def onnx_io(path):
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits], [o.name for o in m.graph.output]


def build_model(name, work):
    """Returns (fp32 model on CPU, eval) and the exported ONNX path; the weights come from seed 0."""
    spec = MODELS[name]
    torch.manual_seed(0)
    model = spec["make"]().eval()
    path = work / f"{name}.onnx"
    t = time.time()
    try:
        export_onnx(name, model, path)
    except Exception as e:
        if name != "bert":
            raise
        # Some transformers versions trace SDPA attention badly: the same weights, plain attention.
        log(f"bert: export failed ({first_line(e)}); retrying with attn_implementation='eager'")
        plain = make_bert("eager").eval()
        plain.load_state_dict(model.state_dict())
        export_onnx(name, plain, path)
    log(f"{name}: exported {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.time() - t:.1f} s")
    return model, path


# ----------------------------------------------------------------------------------------
# Timing


def set_tf32(on):
    try:
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
    except Exception as e:  # newer PyTorch may refuse to mix the old and the new precision API
        log(f"warning: cannot set TF32 to {on}: {first_line(e)}")


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, dev, warmup, iters, before=None):
    """Median milliseconds of one call: CUDA events around each call, then synchronize."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    sync(dev)
    times = []
    for _ in range(iters):
        if before:
            before()
        if dev.type == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e))
        else:
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def to_peer(inputs, dev, half, cnn):
    out = []
    for t in inputs.values():
        t = t.to(dev)
        if t.is_floating_point():
            t = t.half() if half else t
            if cnn:
                t = t.contiguous(memory_format=torch.channels_last)
        out.append(t)
    return out


def run_peer(peer, model, compiled, args, dev, a):
    """Times one peer; compiled caches torch.compile wrappers per peer (one per model and precision)."""
    mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
    before = None
    if peer == "eager":
        fn = model
    else:
        if peer not in compiled:
            mode = "reduce-overhead" if peer == "graphs" else None
            compiled[peer] = torch.compile(model, mode=mode, dynamic=False)
        fn = compiled[peer]
        if peer == "graphs" and mark and dev.type == "cuda":
            before = mark
    with torch.inference_mode():
        t = time.time()
        if before:
            before()
        fn(*args)  # first call: compiles for this shape
        sync(dev)
        first_s = time.time() - t
        ms = time_ms(lambda: fn(*args), dev, max(a.peer_warmup, 2), a.peer_iters, before)
    return ms, first_s


# ----------------------------------------------------------------------------------------
# kiln


def gpu_temperature():
    """The GPU's temperature (C) from nvidia-smi (GPU 0 or CUDA_VISIBLE_DEVICES' first), None if unreadable."""
    gpu = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0]
    try:
        out = subprocess.run(["nvidia-smi", "-i", gpu, "--query-gpu=temperature.gpu", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
        return float(out.split()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def cool_down(a, what):
    """With --cool-to C: wait (at most --cool-timeout s) until the GPU is at or below C before a timed run,
    so kiln and every peer start from the same temperature whatever ran before them (at the 700 W cap a
    hotter GPU clocks lower: session 29). Returns the temperature the run starts at (None without the option)."""
    if not a.cool_to or a.device == "cpu":
        return None
    t0, temp = time.time(), gpu_temperature()
    while temp is not None and temp > a.cool_to and time.time() - t0 < a.cool_timeout:
        time.sleep(1)
        temp = gpu_temperature()
    log(f"{what}: starts at {temp} C after {time.time() - t0:.0f} s of cooling")
    return temp


def sanitize(name):
    s = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return "_" * (len(s) + 1) if s in ("", ".", "..") else s


def kiln_call(a, args, logfile):
    """Runs kiln; returns (ok, error line, seconds). The whole output goes to logfile."""
    cmd = [str(a.kiln)] + [str(x) for x in args]
    log("$ " + shlex.join(cmd))
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
        out, err, rc = p.stdout, p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""))
        err += f"\ntimed out after {a.timeout} s"
        rc = None
    except OSError as e:
        out, err, rc = "", f"cannot start kiln: {e}", None
    secs = time.time() - t
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text(f"$ {shlex.join(cmd)}\n# rc={rc} {secs:.1f} s\n--- stdout\n{out}\n--- stderr\n{err}\n")
    if rc == 0:
        return True, None, secs
    if rc is None and "timed out" in err:
        msg = f"timed out after {a.timeout} s"
    else:
        lines = [l for l in (err + "\n" + out).splitlines() if "error" in l.lower()]
        msg = first_line(lines[0] if lines else (err or out or f"exit status {rc}"))
        if rc is not None and rc < 0:
            msg = f"killed by signal {-rc}: {msg}"
    return False, msg, secs


def kiln_row(a, name, prec, b, onnx_path, onnx_in, onnx_out, inputs, row, ref_fn, tag):
    """kiln build, bench and run for one row; fills row. Returns False when the build failed."""
    eng = a.work / f"{tag}.kiln"
    shapes = ",".join(f"{n}:{'x'.join(str(d) for d in inputs[n].shape)}" for n in onnx_in)
    dev = ["--device", a.kiln_device]
    logs = a.out / "logs"
    build = ["build", onnx_path, "-o", eng] + dev + (["--fp16"] if prec == "fp16" else [])
    if prec == "fp16" and a.kiln_io == "match" and a.kiln_device != "cpu":
        # The FP16 peers take and return float16 tensors: kiln gets the same (its float
        # inputs/outputs in float16, --input/--output-io-formats), not float32 it would convert.
        build += ["--input-io-formats", "fp16", "--output-io-formats", "fp16"]
    build += ["--min-shapes", shapes, "--opt-shapes", shapes, "--max-shapes", shapes] + shlex.split(a.kiln_build_args)
    ok, err, secs = kiln_call(a, build, logs / f"{tag}-build.log")
    row["build_s"] = round(secs, 2)
    if not ok:
        row["kiln_err"] = "build: " + err
        return False
    row["engine_mib"] = round(eng.stat().st_size / 2**20, 1)
    try:
        js = a.work / f"{tag}-bench.json"
        bench = ["bench", eng, "--shapes", shapes] + dev
        if a.kiln_device != "cpu":
            bench += ["--cuda-graph", "--no-data-transfers"]
        bench += ["--warmup", a.kiln_warmup, "--iterations", a.kiln_iters, "--json", js]
        row["kiln_start_c"] = cool_down(a, f"{tag} kiln bench")
        ok, err, _ = kiln_call(a, bench, logs / f"{tag}-bench.log")
        if ok:
            j = json.loads(js.read_text())
            # The GPU's clock, power and temperature while kiln timed (its own NVML samples): at the
            # 700 W cap a hotter GPU clocks lower (session 29: ViT-B/16 bs256 16.98 ms at 58 C,
            # 17.50 at 66 C, same engine).
            g = j.get("gpu_state")
            if g:
                row["kiln_gpu_state"] = (f"{g['sm_clock_mhz_mean']:.0f} MHz, {g['power_w_mean']:.0f} W, "
                                         f"{g['temperature_c_min']:.0f}-{g['temperature_c_max']:.0f} C, "
                                         f"power-capped {100 * g['power_capped_share']:.0f}%")
            row["kiln_ms"] = j["latency_ms"]["median"]
            row["kiln_mean_ms"] = j["latency_ms"].get("mean")
            row["kiln_p99_ms"] = j["latency_ms"].get("p99")
            row["kiln_qps"] = j.get("throughput_qps")
            if "gpu_compute_ms" in j:
                row["kiln_gpu_ms"] = j["gpu_compute_ms"].get("median")
            if a.kiln_streams > 1 and b > 1 and a.kiln_device != "cpu":
                # Throughput with that many contexts running concurrently, one stream each
                # (trtexec's --infStreams): what a server with as many instances gets.
                js2 = a.work / f"{tag}-bench-streams.json"
                ok2, _, _ = kiln_call(a, ["bench", eng, "--shapes", shapes] + dev +
                                      ["--cuda-graph", "--no-data-transfers", "--streams", a.kiln_streams,
                                       "--duration", 3, "--json", js2], logs / f"{tag}-bench-streams.log")
                if ok2:
                    row["kiln_streams_qps"] = json.loads(js2.read_text()).get("throughput_qps")
        else:
            row["kiln_err"] = "bench: " + err
        if not a.no_check:
            check_row(a, eng, dev, onnx_in, onnx_out, inputs, row, ref_fn, tag, logs)
    finally:
        if not a.keep:
            eng.unlink(missing_ok=True)
    return True


def check_row(a, eng, dev, onnx_in, onnx_out, inputs, row, ref_fn, tag, logs):
    d = a.work / f"{tag}-io"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    try:
        files = {}
        for n in onnx_in:
            files[n] = d / f"in-{sanitize(n)}.npy"
            np.save(files[n], inputs[n].numpy())
        run = ["run", eng] + [x for n in onnx_in for x in ("--input", f"{n}={files[n]}")]
        run += ["--output-dir", d] + dev
        ok, err, _ = kiln_call(a, run, logs / f"{tag}-run.log")
        if not ok and "expects float16" in err:  # an engine with float16 inputs: give it float16 data
            for n in onnx_in:
                if inputs[n].is_floating_point():
                    np.save(files[n], inputs[n].numpy().astype(np.float16))
            ok, err, _ = kiln_call(a, run, logs / f"{tag}-run.log")
        if not ok:
            row["check_err"] = "run: " + err
            return
        out = d / f"{sanitize(onnx_out[0])}.npy"
        if not out.exists():
            row["check_err"] = f"run wrote no {out.name}"
            return
        got = np.load(out)
        ref = ref_fn()
        if tuple(got.shape) != tuple(ref.shape):
            row["check_err"] = f"shape {list(got.shape)} vs torch {list(ref.shape)}"
            return
        g = torch.from_numpy(got).to(ref.device, torch.float32)
        num, den = (g - ref).abs().max().item(), ref.abs().max().item()
        if den == 0:
            row["check_err"] = "the torch reference is all zeros"
            return
        err = num / den
        row["max_rel_err"] = err
        row["tol"] = a.tol_fp16 if row["prec"] == "fp16" else a.tol_fp32
        row["ok"] = bool(err <= row["tol"])  # NaN fails
        del g, ref
    except Exception as e:
        row["check_err"] = f"check: {type(e).__name__}: {first_line(e)}"
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# Report


def fmt(v, spec=".4g"):
    return "—" if v is None else format(v, spec)


def fmt_rate(v):
    if v is None:
        return "—"
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.3g}"


def render(rows, meta):
    notes = []

    def err_cell(text):
        notes.append(text)
        return f"err ({len(notes)})"

    head = ["model", "prec", "batch", "kiln ms", "eager ms", "compile ms", "graphs ms", "best peer",
            "kiln/best", "kiln img/s or seq/s", f"kiln, {meta.get('streams', 2)} streams", "build s", "max rel err", "ok", "eager err", "kiln GPU state"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("skipped"):
            kiln = f"skip: {r['skipped']}"
        elif "kiln_err" in r and r.get("kiln_ms") is None:
            kiln = err_cell(f"{r['model']} {r['prec']} bs{r['batch']} kiln {r['kiln_err']}")
        else:
            kiln = fmt(r.get("kiln_ms"))
        peers = []
        for p in PEERS:
            if p in r.get("peer_err", {}):
                peers.append(err_cell(f"{r['model']} {r['prec']} bs{r['batch']} {p}: {r['peer_err'][p]}"))
            else:
                peers.append(fmt(r.get(f"{p}_ms")))
        best = r.get("best_peer")
        ratio = r.get("kiln_ms") / r["best_ms"] if best and r.get("kiln_ms") else None
        rate = r["batch"] * 1000.0 / r["kiln_ms"] if r.get("kiln_ms") else None
        if "check_err" in r:
            ok = err_cell(f"{r['model']} {r['prec']} bs{r['batch']} check {r['check_err']}")
        else:
            ok = {True: "pass", False: "FAIL", None: "—"}[r.get("ok")]
        cells = [r["model"], r["prec"], str(r["batch"]), kiln, *peers,
                 f"{best} {fmt(r['best_ms'])}" if best else "—", fmt(ratio, ".2f"),
                 fmt_rate(rate) + (f" {r['unit']}" if rate else ""),
                 fmt_rate(r["kiln_streams_qps"] * r["batch"]) if r.get("kiln_streams_qps") else "—",
                 fmt(r.get("build_s"), ".1f"),
                 fmt(r.get("max_rel_err"), ".2e"), ok, fmt(r.get("eager_rel_err"), ".2e"),
                 r.get("kiln_gpu_state", "—")]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    out = [f"# kiln vs PyTorch peers ({meta['started']})", "",
           f"- device: {meta['device']}; torch {meta['torch']}; {meta['kiln_version']}",
           f"- command: `{meta['command']}`",
           "- ms: median per batch, inputs resident on the device; kiln: `kiln bench --cuda-graph "
           "--no-data-transfers`, latency median; peers: CUDA events around each call; kiln, N streams: "
           "throughput of N contexts running concurrently (`kiln bench --streams N`, trtexec's --infStreams)",
           "- kiln/best < 1: kiln faster than the best peer; max rel err: max|kiln - torch fp32| / max|torch fp32|; "
           "eager err: the same for PyTorch eager at the row's precision (fp32 rows: with TF32, as timed)",
           "- kiln GPU state: mean SM clock and power, temperature range and the share of samples at the power cap "
           "during kiln's bench (its JSON's gpu_state, NVML samples); at the cap a hotter GPU clocks lower",
           *([f"- every timed run (kiln's bench and each peer) started at or below {meta['cool_to']:g} C "
              f"(--cool-to; start temperatures in peers.json)"] if meta.get("cool_to") else []),
           "", *lines]
    if notes:
        out += ["", "Errors:", ""] + [f"{i}. {n.replace(chr(10), ' ')}" for i, n in enumerate(notes, 1)]
    return "\n".join(out) + "\n"


def write_report(a, rows, meta):
    md = render(rows, meta)
    (a.out / "peers.md").write_text(md)
    (a.out / "peers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    return md


# ----------------------------------------------------------------------------------------


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet50,bert,vit_b_16,yolov8n", help="comma separated: " + ",".join(MODELS))
    p.add_argument("--precisions", default="fp32,fp16")
    p.add_argument("--batches", default="", help="comma separated; default per model (1,32,256; BERT 1,32,128)")
    p.add_argument("--peers", default="eager,compile,graphs", help="eager, compile, graphs (reduce-overhead); "
                   "'none' for kiln only")
    p.add_argument("--quick", action="store_true", help="batches 1 and 32, fewer iterations")
    p.add_argument("--kiln", type=Path, default=ROOT / "build/gpu/kiln")
    p.add_argument("--kiln-build-args", default="", help="extra arguments to `kiln build`")
    p.add_argument("--kiln-io", choices=["match", "fp32"], default="match",
                   help="fp16 rows: kiln's float inputs/outputs in float16 like the peers' (match) or float32")
    p.add_argument("--work", type=Path, default=Path("/tmp/kiln-bench"))
    p.add_argument("--out", type=Path, default=None, help="report folder (default $OUT, else --work)")
    p.add_argument("--device", default="cuda", help="torch device (cpu only for a dry run)")
    p.add_argument("--kiln-device", default=None, help="kiln --device (default: as --device)")
    p.add_argument("--timeout", type=float, default=300, help="seconds allowed to each kiln command")
    p.add_argument("--budget", type=float, default=0, help="start no new row after this many seconds (0: none)")
    p.add_argument("--kiln-warmup", type=int, default=None)
    p.add_argument("--kiln-iters", type=int, default=None)
    p.add_argument("--kiln-streams", type=int, default=2,
                   help="also bench batch > 1 rows with this many concurrent streams (0 or 1: not)")
    p.add_argument("--cool-to", type=float, default=0, help="before each timed run (kiln's bench and every "
                   "peer) wait until the GPU is at or below this many degrees C (0: do not wait)")
    p.add_argument("--cool-timeout", type=float, default=180, help="wait at most this many seconds for --cool-to")
    p.add_argument("--peer-warmup", type=int, default=None)
    p.add_argument("--peer-iters", type=int, default=None)
    p.add_argument("--no-peer-tf32", action="store_true", help="time fp32 peers without TF32 (kiln allows TF32 "
                   "by default)")
    p.add_argument("--tol-fp32", type=float, default=1e-3)
    p.add_argument("--tol-fp16", type=float, default=1e-2)
    p.add_argument("--no-check", action="store_true", help="skip the kiln run output check")
    p.add_argument("--keep", action="store_true", help="keep engine files in --work")
    a = p.parse_args()
    a.models = [ALIASES.get(m.strip(), m.strip()) for m in a.models.split(",") if m.strip()]
    for m in a.models:
        if m not in MODELS:
            p.error(f"unknown model {m!r} (known: {', '.join(MODELS)})")
    a.precisions = [x.strip() for x in a.precisions.split(",") if x.strip()]
    if not set(a.precisions) <= {"fp32", "fp16"}:
        p.error("--precisions takes fp32 and/or fp16")
    a.peers = [] if a.peers.strip() == "none" else [x.strip() for x in a.peers.split(",") if x.strip()]
    if not set(a.peers) <= set(PEERS):
        p.error(f"--peers takes {', '.join(PEERS)} or none")
    a.batches = [int(x) for x in a.batches.split(",") if x.strip()]
    a.kiln_device = a.kiln_device or a.device
    q = a.quick
    a.kiln_warmup = a.kiln_warmup if a.kiln_warmup is not None else (10 if q else 20)
    a.kiln_iters = a.kiln_iters if a.kiln_iters is not None else (100 if q else 200)
    a.peer_warmup = a.peer_warmup if a.peer_warmup is not None else (5 if q else 20)
    a.peer_iters = a.peer_iters if a.peer_iters is not None else (50 if q else 100)
    a.kiln = a.kiln.resolve()
    env_out = os.environ.get("OUT")
    a.out = a.out or (Path(env_out) if env_out else a.work)
    return a


def main():
    a = parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    a.out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("peers.py: no CUDA device (use --device cpu for a dry run)")
    if not a.kiln.exists():
        log(f"warning: {a.kiln} does not exist (build it: bash bench/gpu.sh); kiln rows will fail")
    try:
        kv = subprocess.run([str(a.kiln), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as e:
        kv = f"kiln --version failed: {first_line(e)}"
    meta = {"started": f"{datetime.datetime.now():%Y-%m-%d %H:%M}", "command": shlex.join(sys.argv),
            "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "torch": torch.__version__,
            "kiln_version": kv or "kiln (no version)", "kiln": str(a.kiln), "streams": a.kiln_streams, "cool_to": a.cool_to,
            "args": {k: str(v) for k, v in vars(a).items()}}
    log(f"{meta['device']}, torch {torch.__version__}, {meta['kiln_version']}; work {a.work}, report {a.out}")
    torch.backends.cudnn.benchmark = True
    dyn = torch._dynamo.config
    for knob in ("cache_size_limit", "recompile_limit"):  # fall back to eager silently is worse than waiting
        if hasattr(dyn, knob):
            setattr(dyn, knob, max(getattr(dyn, knob), 64))
    rows = []
    for name in a.models:
        spec = MODELS[name]
        batches = a.batches or ([1, 32] if a.quick else spec["batches"])
        try:
            model, onnx_path = build_model(name, a.work)
            onnx_in, onnx_out = onnx_io(onnx_path)
        except Exception as e:
            log(f"{name}: model or export failed:\n{traceback.format_exc()}")
            for prec in a.precisions:
                for b in batches:
                    rows.append({"model": name, "prec": prec, "batch": b, "unit": spec["unit"],
                                 "kiln_err": f"export: {type(e).__name__}: {first_line(e)}", "peer_err": {}})
            write_report(a, rows, meta)
            continue
        log(f"{name}: ONNX inputs {onnx_in}, outputs {onnx_out}")
        ref_model = copy.deepcopy(model).to(dev)
        for prec in a.precisions:
            half = prec == "fp16"
            peer_model = copy.deepcopy(model)
            peer_model = peer_model.half() if half else peer_model
            if spec["cnn"]:
                peer_model = peer_model.to(memory_format=torch.channels_last)
            peer_model = peer_model.to(dev).eval()
            compiled = {}
            build_failed = None
            for b in batches:
                row = {"model": name, "prec": prec, "batch": b, "unit": spec["unit"], "peer_err": {}}
                rows.append(row)
                if a.budget and time.time() - T0 > a.budget:
                    row["skipped"] = "budget"
                    continue
                if build_failed is not None:
                    row["skipped"] = f"build failed at bs{build_failed}"
                    continue
                tag = f"{name}-{prec}-bs{b}"
                log(f"--- {tag}")
                inputs = spec["inputs"](b, torch.Generator().manual_seed(1000 + b))

                def ref_fn(inputs=inputs):
                    set_tf32(False)
                    try:
                        with torch.inference_mode():
                            return ref_model(*[t.to(dev) for t in inputs.values()]).float()
                    finally:
                        set_tf32(not a.no_peer_tf32)

                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                if not kiln_row(a, name, prec, b, onnx_path, onnx_in, onnx_out, inputs, row, ref_fn, tag):
                    build_failed = b
                    log(f"{tag}: kiln {row['kiln_err']}; skipping the larger batches of {name} {prec}")
                    write_report(a, rows, meta)
                    continue
                set_tf32(not a.no_peer_tf32)
                args = to_peer(inputs, dev, half, spec["cnn"])
                for peer in a.peers:
                    try:
                        row[f"{peer}_start_c"] = cool_down(a, f"{tag} {peer}")
                        ms, first_s = run_peer(peer, peer_model, compiled, args, dev, a)
                        row[f"{peer}_ms"] = ms
                        if peer != "eager":
                            row[f"{peer}_first_call_s"] = round(first_s, 1)
                    except Exception as e:
                        row["peer_err"][peer] = f"{type(e).__name__}: {first_line(e)}"
                        log(f"{tag}: {peer} failed:\n{traceback.format_exc(limit=3)}")
                if row.get("eager_ms") is not None:
                    # The eager peer's own error on the same measure (TF32 as timed): what PyTorch
                    # itself gives up at this precision, next to kiln's max rel err.
                    try:
                        with torch.inference_mode():
                            y = peer_model(*args).float()
                        ref = ref_fn()
                        row["eager_rel_err"] = (y - ref).abs().max().item() / ref.abs().max().item()
                        del y, ref
                    except Exception as e:
                        row["peer_err"]["eager check"] = f"{type(e).__name__}: {first_line(e)}"
                del args
                timed = {p: row[f"{p}_ms"] for p in PEERS if row.get(f"{p}_ms") is not None}
                if timed:
                    row["best_peer"] = min(timed, key=timed.get)
                    row["best_ms"] = timed[row["best_peer"]]
                log(f"{tag}: kiln {fmt(row.get('kiln_ms'))} ms (build {fmt(row.get('build_s'), '.1f')} s, "
                    f"err {fmt(row.get('max_rel_err'), '.2e')} {row.get('ok')}) | "
                    + ", ".join(f"{p} {fmt(row.get(f'{p}_ms'))}" for p in a.peers)
                    + "".join(f" | {k}: {row[k]}" for k in ("kiln_err", "check_err") if k in row))
                write_report(a, rows, meta)
            del peer_model, compiled
            torch._dynamo.reset()
            gc.collect()
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        del ref_model, model
        gc.collect()
    md = write_report(a, rows, meta)
    print()
    print(md)
    log(f"wrote {a.out / 'peers.md'} and {a.out / 'peers.json'}")


if __name__ == "__main__":
    main()
