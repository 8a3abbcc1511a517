#!/usr/bin/env python3
"""Dynamic batch: one engine, a min/opt/max profile, changing batch sizes (seed 000).

    python examples/dynamic_batch_resnet.py                        # a generated ResNet
    python examples/dynamic_batch_resnet.py --model resnet18.onnx --image-size 224

The ONNX model's batch dim is dynamic (-1 / a symbolic name). The engine is built
with the profile min=1, opt=4, max=8 and then run at batch sizes 1, 3, 8 and 6
through the TensorRT-style calls (set_input_shape, get_tensor_shape,
set_tensor_address, execute_async_v3) with buffers allocated per shape, and once
more through context.infer(). On the CPU execute_async_v3 runs synchronously.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

import kiln


def build(onnx_path: str, input_name: str, image: int, logger: kiln.Logger, batches=(1, 4, 8)) -> kiln.Engine:
    builder = kiln.Builder(logger)
    network = builder.create_network(1 << int(kiln.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = kiln.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        raise SystemExit("\n".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE, 1 << 30)
    profile = builder.create_optimization_profile()
    lo, opt, hi = ((b, 3, image, image) for b in batches)
    profile.set_shape(input_name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    return kiln.Runtime(logger).deserialize_cuda_engine(serialized)


def run_batch(engine: kiln.Engine, context: kiln.ExecutionContext, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The buffer-per-binding flow of the TensorRT samples, without the device copies."""
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == kiln.TensorIOMode.INPUT:
            context.set_input_shape(name, batch.shape)
            buffers[name] = np.ascontiguousarray(batch, dtype=kiln.nptype(engine.get_tensor_dtype(name)))
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == kiln.TensorIOMode.OUTPUT:
            shape = context.get_tensor_shape(name)  # known once the input shapes are set
            buffers[name] = np.empty(shape, dtype=kiln.nptype(engine.get_tensor_dtype(name)))
    for name, buf in buffers.items():
        context.set_tensor_address(name, buf.ctypes.data)  # raw addresses, as with TensorRT
    context.execute_async_v3(stream_handle=0)
    return {n: b for n, b in buffers.items() if engine.get_tensor_mode(n) == kiln.TensorIOMode.OUTPUT}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="ONNX model with a dynamic batch dim (default: a generated ResNet)")
    ap.add_argument("--input-name", default="input")
    ap.add_argument("--image-size", type=int, default=32)
    args = ap.parse_args(argv)

    logger = kiln.Logger(kiln.Logger.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from example_models import save, tiny_resnet

            model = save(tiny_resnet(image=args.image_size), os.path.join(tmp, "tiny_resnet.onnx"))
        engine = build(model, args.input_name, args.image_size, logger)
        print("input shape in the engine:", engine.get_tensor_shape(args.input_name))
        print("profile 0 (min, opt, max):", engine.get_tensor_profile_shape(args.input_name, 0))

        try:
            import onnxruntime

            session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        except ImportError:
            session = None

        context = engine.create_execution_context()
        rng = np.random.default_rng(0)
        worst = 0.0
        for n in (1, 3, 8, 6):
            batch = rng.standard_normal((n, 3, args.image_size, args.image_size)).astype(np.float32)
            outputs = run_batch(engine, context, batch)
            high_level = context.infer({args.input_name: batch})
            for name, value in outputs.items():
                assert np.array_equal(value, high_level[name]), "infer() and execute_async_v3 differ"
                line = f"batch {n}: {name} {value.shape}, top-1 {value.reshape(n, -1).argmax(1).tolist()}"
                if session is not None:
                    ref = session.run([name], {args.input_name: batch})[0]
                    err = float(np.max(np.abs(value - ref)))
                    worst = max(worst, err)
                    line += f", max |kiln - onnxruntime| {err:.2g}"
                print(line)
        try:
            context.set_input_shape(args.input_name, (9, 3, args.image_size, args.image_size))
        except kiln.OutOfRangeError as e:
            print("batch 9 is refused:", e)
        if worst > 1e-4:
            print("MISMATCH", file=sys.stderr)
            return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
