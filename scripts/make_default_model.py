#!/usr/bin/env python3
"""Writes a small ResNet-style CNN with random weights (no download):

    python3 scripts/make_default_model.py [OUT.onnx]     (default build/models/default.onnx)

Input "images" float32 [1, 3, 64, 64]; output "logits" float32 [1, 100].
Stem conv -> 2 residual blocks (Conv/BatchNormalization/Relu, Add) -> MaxPool ->
GlobalAveragePool -> Flatten -> Gemm. Fixed seed, so the file is reproducible.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "models", "default.onnx")
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def add_init(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, dtype=np.float32), name))

    def conv_bn(x, cin, cout, tag, stride=1, relu=True):
        add_init(f"{tag}.w", rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9))
        add_init(f"{tag}.scale", rng.uniform(0.5, 1.5, cout))
        add_init(f"{tag}.bias", rng.standard_normal(cout) * 0.1)
        add_init(f"{tag}.mean", rng.standard_normal(cout) * 0.1)
        add_init(f"{tag}.var", rng.uniform(0.5, 1.5, cout))
        nodes.append(helper.make_node("Conv", [x, f"{tag}.w"], [f"{tag}.conv"], name=f"{tag}.conv",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]))
        nodes.append(helper.make_node("BatchNormalization", [f"{tag}.conv", f"{tag}.scale", f"{tag}.bias",
                                                             f"{tag}.mean", f"{tag}.var"], [f"{tag}.bn"],
                                      name=f"{tag}.bn"))
        if not relu:
            return f"{tag}.bn"
        nodes.append(helper.make_node("Relu", [f"{tag}.bn"], [f"{tag}.relu"], name=f"{tag}.relu"))
        return f"{tag}.relu"

    x = conv_bn("images", 3, 32, "stem", stride=2)
    for i in range(2):
        y = conv_bn(x, 32, 32, f"block{i}.a")
        y = conv_bn(y, 32, 32, f"block{i}.b", relu=False)
        nodes.append(helper.make_node("Add", [x, y], [f"block{i}.sum"], name=f"block{i}.add"))
        nodes.append(helper.make_node("Relu", [f"block{i}.sum"], [f"block{i}.out"], name=f"block{i}.relu"))
        x = f"block{i}.out"
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("GlobalAveragePool", ["pool"], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    add_init("fc.w", rng.standard_normal((100, 32)) / np.sqrt(32))
    add_init("fc.b", rng.standard_normal(100) * 0.1)
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "kiln_default_cnn",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 100])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln",
                              ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    onnx.save(model, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
