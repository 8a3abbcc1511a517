#!/usr/bin/env python3
"""Build LeNet layer by layer with numpy weights, no ONNX involved (seed 001).

    python examples/network_from_scratch.py                  # random weights
    python examples/network_from_scratch.py --weights w.npz  # conv1.weight, conv1.bias, ...
    python examples/network_from_scratch.py --device cpu     # default: cuda if kiln finds a GPU

The network of TensorRT's network_api_pytorch_mnist sample: conv(20, 5x5) ->
maxpool 2x2 -> conv(50, 5x5) -> maxpool 2x2 -> fully connected 500 -> relu ->
fully connected 10 -> softmax. fc1 uses add_fully_connected (the seed's TensorRT 7
call); fc2 is written the TensorRT 10 way with add_shuffle, add_constant,
add_matrix_multiply and add_elementwise. The result is checked against numpy.
The .npz may come from a PyTorch state_dict:
    numpy.savez("w.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import kiln

INPUT_NAME = "data"
INPUT_SHAPE = (1, 1, 28, 28)
OUTPUT_NAME = "prob"
OUTPUT_SIZE = 10


def default_device() -> str:
    return "cuda" if kiln.cuda_device_count() > 0 else "cpu"


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)

    def init(*shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)

    return {
        "conv1.weight": init(20, 1, 5, 5), "conv1.bias": init(20) * 0.1,
        "conv2.weight": init(50, 20, 5, 5), "conv2.bias": init(50) * 0.1,
        "fc1.weight": init(500, 800), "fc1.bias": init(500) * 0.1,
        "fc2.weight": init(10, 500), "fc2.bias": init(10) * 0.1,
    }


def populate_network(network: kiln.NetworkDefinition, weights: dict[str, np.ndarray]) -> None:
    input_tensor = network.add_input(name=INPUT_NAME, dtype=kiln.float32, shape=INPUT_SHAPE)

    conv1 = network.add_convolution(input=input_tensor, num_output_maps=20, kernel_shape=(5, 5),
                                    kernel=weights["conv1.weight"], bias=weights["conv1.bias"])
    conv1.stride = (1, 1)
    pool1 = network.add_pooling(input=conv1.get_output(0), type=kiln.PoolingType.MAX, window_size=(2, 2))
    pool1.stride = (2, 2)

    conv2 = network.add_convolution(pool1.get_output(0), 50, (5, 5), weights["conv2.weight"], weights["conv2.bias"])
    conv2.stride = (1, 1)
    pool2 = network.add_pooling(conv2.get_output(0), kiln.PoolingType.MAX, (2, 2))
    pool2.stride = (2, 2)

    fc1 = network.add_fully_connected(input=pool2.get_output(0), num_outputs=500,
                                      kernel=weights["fc1.weight"], bias=weights["fc1.bias"])
    relu1 = network.add_activation(input=fc1.get_output(0), type=kiln.ActivationType.RELU)

    # fc2 the TensorRT 10 way: [1, 500] x W^T + b.
    flat = network.add_shuffle(relu1.get_output(0))
    flat.reshape_dims = (1, 500)
    w2 = network.add_constant(weights["fc2.weight"].shape, weights["fc2.weight"])
    mm = network.add_matrix_multiply(flat.get_output(0), kiln.MatrixOperation.NONE,
                                     w2.get_output(0), kiln.MatrixOperation.TRANSPOSE)
    b2 = network.add_constant((1, OUTPUT_SIZE), weights["fc2.bias"])
    logits = network.add_elementwise(mm.get_output(0), b2.get_output(0), kiln.ElementWiseOperation.SUM)
    logits.get_output(0).name = "logits"
    network.mark_output(logits.get_output(0))

    softmax = network.add_softmax(logits.get_output(0))
    softmax.axes = 1 << 1
    softmax.get_output(0).name = OUTPUT_NAME
    network.mark_output(softmax.get_output(0))


# ------------------------------------------------------------------ numpy reference

def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    oh, ow = h - kh + 1, wd - kw + 1
    cols = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))  # n c oh ow kh kw
    return np.einsum("ncijyx,kcyx->nkij", cols, w, optimize=True) + b.reshape(1, k, 1, 1)


def maxpool2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def reference(x: np.ndarray, wt: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    y = maxpool2(conv2d(x, wt["conv1.weight"], wt["conv1.bias"]))
    y = maxpool2(conv2d(y, wt["conv2.weight"], wt["conv2.bias"]))
    y = np.maximum(y.reshape(y.shape[0], -1) @ wt["fc1.weight"].T + wt["fc1.bias"], 0)
    logits = y @ wt["fc2.weight"].T + wt["fc2.bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits, e / e.sum(axis=1, keepdims=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help=".npz with conv1.weight, conv1.bias, ..., fc2.bias (default: random)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=default_device(),
                    help="where the engine runs (default: cuda when kiln finds a GPU)")
    args = ap.parse_args(argv)
    weights = dict(np.load(args.weights)) if args.weights else random_weights()

    logger = kiln.Logger(kiln.Logger.WARNING)
    builder = kiln.Builder(logger)
    network = builder.create_network()
    populate_network(network, weights)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE, 1 << 20)
    if args.device == "cuda":
        config.set_device(kiln.DeviceType.CUDA)
        # TF32 is on by default, as in TensorRT; off, FP32 layers match numpy to 1e-4.
        config.clear_flag(kiln.BuilderFlag.TF32)
    engine = kiln.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    print("engine runs on", engine.device)
    context = engine.create_execution_context()

    rng = np.random.default_rng(1)
    image = rng.random(INPUT_SHAPE, dtype=np.float32)
    out = context.infer({INPUT_NAME: image})
    ref_logits, ref_prob = reference(image, weights)
    err = max(float(np.max(np.abs(out["logits"] - ref_logits))), float(np.max(np.abs(out[OUTPUT_NAME] - ref_prob))))
    print("prediction:", int(out[OUTPUT_NAME].argmax()), "(numpy:", int(ref_prob.argmax()), ")")
    print(f"max |kiln - numpy| = {err:.3g}")
    if err > 1e-4:
        print("MISMATCH", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
