"""Small ONNX models generated with onnx.helper and numpy, so every example runs
on a fresh machine without downloads. The examples (and tests/python) import it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# onnxruntime 1.30 reads IR version <= 13; 8 is enough for opset 17.
IR_VERSION = 8
OPSET = 17


def _model(nodes, inputs, outputs, initializers, name):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              producer_name="kiln-examples")
    onnx.checker.check_model(model)
    return model


def _conv_bn_relu(nodes, inits, rng, x, out, cin, cout, k=3, stride=1, relu=True):
    w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    inits += [numpy_helper.from_array(w, out + "_w")]
    nodes.append(helper.make_node("Conv", [x, out + "_w"], [out + "_conv"], pads=[k // 2] * 4, strides=[stride] * 2))
    gamma = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    beta = rng.uniform(-0.2, 0.2, cout).astype(np.float32)
    mean = rng.uniform(-0.2, 0.2, cout).astype(np.float32)
    var = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    for arr, suffix in ((gamma, "_g"), (beta, "_b"), (mean, "_m"), (var, "_v")):
        inits.append(numpy_helper.from_array(arr, out + suffix))
    bn_out = out + "_bn" if relu else out
    nodes.append(helper.make_node("BatchNormalization", [out + "_conv", out + "_g", out + "_b", out + "_m", out + "_v"],
                                  [bn_out]))
    if relu:
        nodes.append(helper.make_node("Relu", [bn_out], [out]))
    return out


def tiny_resnet(num_classes: int = 10, width: int = 8, image: int = 32, seed: int = 0) -> onnx.ModelProto:
    """A ResNet-shaped classifier: stem, two residual blocks (one strided), global pool,
    fully connected, softmax. Input 'input' [batch, 3, image, image] with a dynamic
    batch dim; output 'output' [batch, num_classes]."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = _conv_bn_relu(nodes, inits, rng, "input", "stem", 3, width)
    # block 1: identity shortcut
    a = _conv_bn_relu(nodes, inits, rng, x, "b1a", width, width)
    b = _conv_bn_relu(nodes, inits, rng, a, "b1b", width, width, relu=False)
    nodes += [helper.make_node("Add", [b, x], ["b1_sum"]), helper.make_node("Relu", ["b1_sum"], ["b1"])]
    # block 2: strided, 1x1 projection shortcut
    a = _conv_bn_relu(nodes, inits, rng, "b1", "b2a", width, 2 * width, stride=2)
    b = _conv_bn_relu(nodes, inits, rng, a, "b2b", 2 * width, 2 * width, relu=False)
    p = _conv_bn_relu(nodes, inits, rng, "b1", "b2p", width, 2 * width, k=1, stride=2, relu=False)
    nodes += [helper.make_node("Add", [b, p], ["b2_sum"]), helper.make_node("Relu", ["b2_sum"], ["b2"])]
    nodes += [helper.make_node("GlobalAveragePool", ["b2"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"], axis=1)]
    fc_w = (rng.standard_normal((num_classes, 2 * width)) * 0.5).astype(np.float32)
    fc_b = (rng.standard_normal(num_classes) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(fc_w, "fc_w"), numpy_helper.from_array(fc_b, "fc_b")]
    nodes += [helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], ["output"], axis=-1)]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, image, image])]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", num_classes])]
    return _model(nodes, inputs, outputs, inits, "tiny_resnet")


def small_cnn(seed: int = 0, batch: int = 1) -> onnx.ModelProto:
    """A static-shape CNN: 'images' [batch, 3, 16, 16] -> conv/relu/maxpool/conv/
    global-pool/gemm -> 'scores' [batch, 5] and 'features' [batch, 6, 8, 8]."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32) * 0.4
    b1 = rng.standard_normal(6).astype(np.float32) * 0.1
    w2 = rng.standard_normal((12, 6, 3, 3)).astype(np.float32) * 0.2
    fc = rng.standard_normal((5, 12)).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
             numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(fc, "fc")]
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["features"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["features", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("GlobalAveragePool", ["s2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["scores"], transB=1),
    ]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 16, 16])]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, 5]),
               helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 6, 8, 8])]
    return _model(nodes, inputs, outputs, inits, "small_cnn")


# ------------------------------------------------------------------ YOLO-style detector

DETECTOR_CLASSES = ("red", "green", "blue")


def tiny_detector(size: int = 64, stride: int = 8) -> onnx.ModelProto:
    """A YOLOv8-shaped detector with hand-set weights, so it finds something real:
    each cell of a stride-`stride` grid scores how much of the 3x3-cell window around
    it is red, green or blue, and proposes a box of that window's size centred on
    the cell. The window fully inside an object scores highest, so NMS keeps one
    box per object. Input 'images' [1, 3, size, size] in [0, 1]; output 'output0'
    [1, 4 + classes, cells] with rows cx, cy, w, h (input pixels) then one sigmoid
    score per class, the layout YOLOv8 exports."""
    g = size // stride
    nc = len(DETECTOR_CLASSES)
    window = 3 * stride
    # Class c scores high when channel c is bright and the other two are dark.
    w = np.full((nc, 3, 1, 1), -12.0, dtype=np.float32)
    for c in range(nc):
        w[c, c, 0, 0] = 12.0
    b = np.full(nc, -6.0, dtype=np.float32)
    ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
    grid = np.stack([(xs + 0.5) * stride, (ys + 0.5) * stride,
                     np.full((g, g), window), np.full((g, g), window)]).astype(np.float32)[None]
    inits = [numpy_helper.from_array(w, "cls_w"), numpy_helper.from_array(b, "cls_b"),
             numpy_helper.from_array(grid, "boxes"),
             numpy_helper.from_array(np.array([1, 4 + nc, g * g], dtype=np.int64), "out_shape")]
    pad = stride
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], kernel_shape=[window, window],
                         strides=[stride, stride], pads=[pad, pad, pad, pad]),
        helper.make_node("Conv", ["pooled", "cls_w", "cls_b"], ["cls_logits"]),
        helper.make_node("Sigmoid", ["cls_logits"], ["cls"]),
        helper.make_node("Concat", ["boxes", "cls"], ["head"], axis=1),
        helper.make_node("Reshape", ["head", "out_shape"], ["output0"]),
    ]
    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])]
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, g * g])]
    return _model(nodes, inputs, outputs, inits, "tiny_detector")


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)
