#!/usr/bin/env python3
"""ONNX -> engine file -> inference, the TensorRT Python flow with kiln (seed 004).

    python examples/onnx_to_engine.py                      # a generated CNN
    python examples/onnx_to_engine.py --model model.onnx   # your model (static shapes)
    python examples/onnx_to_engine.py --device cpu --fp16  # default device: cuda if kiln finds a GPU

Parses the model, builds and serializes an engine, writes it to a file, reads the
file back, deserializes it and runs one inference with random inputs; on the GPU the
inputs are uploaded once (kiln.DeviceArray) and the outputs stay on the device until
read back. When onnxruntime is installed the outputs are compared with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import kiln


def default_device() -> str:
    return "cuda" if kiln.cuda_device_count() > 0 else "cpu"


def build_engine_file(onnx_path: str, engine_path: str, logger: kiln.Logger, device: str = "cpu",
                      fp16: bool = False) -> None:
    builder = kiln.Builder(logger)
    network = builder.create_network()
    parser = kiln.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        for i in range(parser.num_errors):
            print("parse error:", parser.get_error(i), file=sys.stderr)
        raise SystemExit(1)
    for i in range(network.num_inputs):
        t = network.get_input(i)
        print(f"input  {t.name!r} shape {t.shape} {t.dtype.name}")
    for i in range(network.num_outputs):
        t = network.get_output(i)
        print(f"output {t.name!r} shape {t.shape} {t.dtype.name}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE, 1 << 28)
    if device == "cuda":
        config.set_device(kiln.DeviceType.CUDA)
        # TF32 is on by default, as in TensorRT; off, FP32 layers match onnxruntime to 1e-4.
        config.clear_flag(kiln.BuilderFlag.TF32)
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(kiln.BuilderFlag.FP16)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    print(f"built in {time.perf_counter() - start:.2f} s: {len(serialized)} bytes")
    with open(engine_path, "wb") as f:
        f.write(serialized)


def run_engine_file(engine_path: str, logger: kiln.Logger, seed: int = 0) -> tuple[dict, dict]:
    runtime = kiln.Runtime(logger)
    with open(engine_path, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    print(f"engine runs on {engine.device}" +
          (f" ({kiln.cuda_device_name(engine.device_index)})" if engine.device == "cuda" else ""))
    context = engine.create_execution_context()
    rng = np.random.default_rng(seed)
    inputs = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == kiln.TensorIOMode.INPUT:
            shape = engine.get_tensor_shape(name)
            if -1 in shape:  # dynamic: run at the profile's opt shape
                shape = engine.get_tensor_profile_shape(name, 0)[1]
            inputs[name] = rng.standard_normal(shape).astype(kiln.nptype(engine.get_tensor_dtype(name)))
    if engine.device == "cuda":
        # Device in, device out: infer() binds the device arrays in place and returns
        # kiln.DeviceArray outputs (torch CUDA tensors in would give torch tensors out).
        on_device = context.infer({name: kiln.DeviceArray.from_host(a) for name, a in inputs.items()})
        outputs = {name: value.copy_to_host() for name, value in on_device.items()}
    else:
        outputs = context.infer(inputs)
    for name, value in outputs.items():
        print(f"{name}: shape {value.shape}, first values {value.ravel()[:4]}")
    return inputs, outputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="ONNX model (default: a generated CNN)")
    ap.add_argument("--engine", help="engine file to write (default: a temporary file)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=default_device(),
                    help="where the engine runs (default: cuda when kiln finds a GPU)")
    ap.add_argument("--fp16", action="store_true", help="let layers run in FP16 where the device is fast at it")
    args = ap.parse_args(argv)
    tolerance = 2e-2 if args.fp16 else 1e-4

    logger = kiln.Logger(kiln.Logger.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from example_models import save, small_cnn

            model = save(small_cnn(), os.path.join(tmp, "small_cnn.onnx"))
        engine_path = args.engine or os.path.join(tmp, "model.engine")
        build_engine_file(model, engine_path, logger, args.device, args.fp16)
        inputs, outputs = run_engine_file(engine_path, logger)

        try:
            import onnxruntime
        except ImportError:
            return 0
        session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for name, ref in zip(names, session.run(names, inputs)):
            err = float(np.max(np.abs(outputs[name] - ref))) if ref.size else 0.0
            scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
            print(f"{name}: max |kiln - onnxruntime| = {err:.3g}")
            if err > tolerance * scale:
                print("MISMATCH", file=sys.stderr)
                return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
