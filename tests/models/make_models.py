#!/usr/bin/env python3
"""Writes the end-to-end test models, their inputs and onnxruntime's outputs.

    python3 tests/models/make_models.py OUT_DIR

OUT_DIR/manifest.json lists, per model: the ONNX file, the `kiln build` arguments,
and cases (input .npy files, reference output .npy files, the profile to use).
Everything is generated with fixed seeds; nothing is downloaded. Tensor names
contain ':' and '/' on purpose (shape specs split on the last ':'; output files
replace unsafe characters with '_').
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR of opset 17; onnxruntime refuses IRs newer than it knows


def safe(name):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def to_model(graph):
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="kiln-tests",
                             ir_version=IR_VERSION)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def make_cnn(rng):
    """Conv/BatchNormalization/Relu/MaxPool/GlobalAveragePool/Flatten/Gemm."""
    nodes, inits = [], []

    def conv_bn_relu(x, cin, cout, tag):
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * np.float32(1.0 / np.sqrt(cin * 9))
        b = rng.standard_normal(cout).astype(np.float32) * np.float32(0.1)
        inits.extend([init(f"{tag}.w", w), init(f"{tag}.b", b)])
        inits.extend([
            init(f"{tag}.bn.scale", rng.uniform(0.5, 1.5, cout).astype(np.float32)),
            init(f"{tag}.bn.bias", rng.standard_normal(cout).astype(np.float32) * np.float32(0.1)),
            init(f"{tag}.bn.mean", rng.standard_normal(cout).astype(np.float32) * np.float32(0.1)),
            init(f"{tag}.bn.var", rng.uniform(0.5, 1.5, cout).astype(np.float32)),
        ])
        nodes.append(helper.make_node("Conv", [x, f"{tag}.w", f"{tag}.b"], [f"{tag}.conv"], name=f"{tag}/conv",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("BatchNormalization",
                                      [f"{tag}.conv", f"{tag}.bn.scale", f"{tag}.bn.bias", f"{tag}.bn.mean", f"{tag}.bn.var"],
                                      [f"{tag}.bn"], name=f"{tag}/bn", epsilon=1e-5))
        nodes.append(helper.make_node("Relu", [f"{tag}.bn"], [f"{tag}.relu"], name=f"{tag}/relu"))
        return f"{tag}.relu"

    x = conv_bn_relu("input:0", 3, 8, "block1")
    nodes.append(helper.make_node("MaxPool", [x], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]))
    x = conv_bn_relu("pool1", 8, 16, "block2")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    inits.append(init("fc.w", rng.standard_normal((10, 16)).astype(np.float32) * np.float32(0.25)))
    inits.append(init("fc.b", rng.standard_normal(10).astype(np.float32) * np.float32(0.1)))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits/dense:0"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("logits/dense:0", TensorProto.FLOAT, [1, 10])], inits)
    model = to_model(graph)
    inputs = [{"input:0": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)}]
    return model, [], inputs, [None]


def make_transformer(rng, seq=16, hidden=64, heads=4, ffn=256, classes=0):
    """One post-norm encoder block: self-attention + Erf-GELU MLP. With classes, a ViT-style
    classifier instead: the block's first token (Gather) through a linear head is the only
    output, so kiln's narrow_rows runs the block's tail on that token."""
    dh = hidden // heads
    nodes, inits = [], []

    def weight(name, shape, scale):
        inits.append(init(name, rng.standard_normal(shape).astype(np.float32) * np.float32(scale)))

    def node(op, ins, outs, **kw):
        nodes.append(helper.make_node(op, ins, outs, name=outs[0] + "/" + op, **kw))

    for p in ("q", "k", "v", "o"):
        weight(f"attn.{p}.w", (hidden, hidden), 1 / np.sqrt(hidden))
        weight(f"attn.{p}.b", (hidden,), 0.05)
    weight("mlp.w1", (hidden, ffn), 1 / np.sqrt(hidden))
    weight("mlp.b1", (ffn,), 0.05)
    weight("mlp.w2", (ffn, hidden), 1 / np.sqrt(ffn))
    weight("mlp.b2", (hidden,), 0.05)
    for ln in ("ln1", "ln2"):
        inits.append(init(f"{ln}.g", rng.uniform(0.8, 1.2, hidden).astype(np.float32)))
        inits.append(init(f"{ln}.b", rng.standard_normal(hidden).astype(np.float32) * np.float32(0.05)))
    inits.append(init("split_heads", np.array([1, seq, heads, dh], dtype=np.int64)))
    inits.append(init("merge_heads", np.array([1, seq, hidden], dtype=np.int64)))
    inits.append(init("scale", np.array(1 / np.sqrt(dh), dtype=np.float32)))
    inits.append(init("half", np.array(0.5, dtype=np.float32)))
    inits.append(init("one", np.array(1.0, dtype=np.float32)))
    inits.append(init("sqrt2", np.array(np.sqrt(2.0), dtype=np.float32)))

    for p in ("q", "k", "v"):
        node("MatMul", ["x", f"attn.{p}.w"], [f"{p}.mm"])
        node("Add", [f"{p}.mm", f"attn.{p}.b"], [f"{p}.proj"])
        node("Reshape", [f"{p}.proj", "split_heads"], [f"{p}.heads"])
    node("Transpose", ["q.heads"], ["q.t"], perm=[0, 2, 1, 3])
    node("Transpose", ["k.heads"], ["k.t"], perm=[0, 2, 3, 1])
    node("Transpose", ["v.heads"], ["v.t"], perm=[0, 2, 1, 3])
    node("MatMul", ["q.t", "k.t"], ["scores.raw"])
    node("Mul", ["scores.raw", "scale"], ["scores"])
    node("Softmax", ["scores"], ["probs"], axis=-1)
    node("MatMul", ["probs", "v.t"], ["ctx.heads"])
    node("Transpose", ["ctx.heads"], ["ctx.t"], perm=[0, 2, 1, 3])
    node("Reshape", ["ctx.t", "merge_heads"], ["ctx"])
    node("MatMul", ["ctx", "attn.o.w"], ["attn.mm"])
    node("Add", ["attn.mm", "attn.o.b"], ["attn.out"])
    node("Add", ["x", "attn.out"], ["res1"])
    node("LayerNormalization", ["res1", "ln1.g", "ln1.b"], ["h1"], axis=-1, epsilon=1e-5)
    node("MatMul", ["h1", "mlp.w1"], ["ff1.mm"])
    node("Add", ["ff1.mm", "mlp.b1"], ["ff1"])
    node("Div", ["ff1", "sqrt2"], ["gelu.s"])
    node("Erf", ["gelu.s"], ["gelu.erf"])
    node("Add", ["gelu.erf", "one"], ["gelu.p"])
    node("Mul", ["ff1", "gelu.p"], ["gelu.m"])
    node("Mul", ["gelu.m", "half"], ["gelu"])
    node("MatMul", ["gelu", "mlp.w2"], ["ff2.mm"])
    node("Add", ["ff2.mm", "mlp.b2"], ["ff2"])
    node("Add", ["h1", "ff2"], ["res2"])
    node("LayerNormalization", ["res2", "ln2.g", "ln2.b"], ["out/hidden"], axis=-1, epsilon=1e-5)
    outputs = [helper.make_tensor_value_info("out/hidden", TensorProto.FLOAT, [1, seq, hidden]),
               helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, heads, seq, seq])]
    if classes:
        inits.append(init("first", np.array(0, dtype=np.int64)))
        weight("head.w", (hidden, classes), 1 / np.sqrt(hidden))
        weight("head.b", (classes,), 0.05)
        node("Gather", ["out/hidden", "first"], ["cls"], axis=1)
        node("MatMul", ["cls", "head.w"], ["head.mm"])
        node("Add", ["head.mm", "head.b"], ["logits"])
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes])]
    graph = helper.make_graph(nodes, "classifier" if classes else "transformer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, hidden])], outputs, inits)
    model = to_model(graph)
    inputs = [{"x": rng.standard_normal((1, seq, hidden)).astype(np.float32)}]
    return model, [], inputs, [None]


def make_dynamic(rng, k=32, h=16, n=8):
    """A dynamic batch dim ("batch") served by two profiles: 1..4 and 5..16."""
    inits = [
        init("w1", rng.standard_normal((k, h)).astype(np.float32) * np.float32(1 / np.sqrt(k))),
        init("b1", rng.standard_normal(h).astype(np.float32) * np.float32(0.1)),
        init("w2", rng.standard_normal((h, n)).astype(np.float32) * np.float32(1 / np.sqrt(h))),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["mm1"], name="fc1"),
        helper.make_node("Add", ["mm1", "b1"], ["fc1.out"], name="fc1/bias"),
        helper.make_node("Relu", ["fc1.out"], ["act"], name="relu"),
        helper.make_node("MatMul", ["act", "w2"], ["mm2"], name="fc2"),
        helper.make_node("Softmax", ["mm2"], ["y"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n])], inits)
    model = to_model(graph)
    build_args = ["--min-shapes", f"x:1x{k}", "--opt-shapes", f"x:2x{k}", "--max-shapes", f"x:4x{k}",
                  "--min-shapes", f"x:5x{k}", "--opt-shapes", f"x:8x{k}", "--max-shapes", f"x:16x{k}"]
    batches = [(1, 0), (3, 0), (4, 0), (5, 1), (9, 1), (16, 1)]
    inputs = [{"x": rng.standard_normal((b, k)).astype(np.float32)} for b, _ in batches]
    return model, build_args, inputs, [p for _, p in batches]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "build/models/e2e"
    os.makedirs(out, exist_ok=True)
    manifest = {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "models": []}
    makers = (("cnn", make_cnn, 1), ("transformer", make_transformer, 2), ("dynamic", make_dynamic, 3),
              ("classifier", lambda rng: make_transformer(rng, seq=17, classes=10), 4))
    for name, maker, seed in makers:
        rng = np.random.default_rng(seed)
        model, build_args, inputs, profiles = maker(rng)
        onnx.checker.check_model(model, full_check=True)
        path = os.path.join(out, f"{name}.onnx")
        onnx.save(model, path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        out_names = [o.name for o in sess.get_outputs()]
        cases = []
        for i, (feed, profile) in enumerate(zip(inputs, profiles)):
            case_dir = os.path.join(name, f"case{i}")
            os.makedirs(os.path.join(out, case_dir), exist_ok=True)
            results = sess.run(None, feed)
            case = {"name": f"case{i}", "inputs": {}, "outputs": {}}
            if profile is not None:
                case["profile"] = profile
            for k, v in feed.items():
                f = os.path.join(case_dir, "in_" + safe(k) + ".npy")
                np.save(os.path.join(out, f), v)
                case["inputs"][k] = f
            for k, v in zip(out_names, results):
                f = os.path.join(case_dir, "ref_" + safe(k) + ".npy")
                np.save(os.path.join(out, f), v)
                case["outputs"][k] = f
            cases.append(case)
        manifest["models"].append({"name": name, "onnx": f"{name}.onnx", "build_args": build_args, "cases": cases})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"wrote {len(manifest['models'])} models to {out}")


if __name__ == "__main__":
    main()
