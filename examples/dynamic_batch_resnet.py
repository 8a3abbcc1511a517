#!/usr/bin/env python3
"""Dynamic batch: one engine, a min/opt/max profile, changing batch sizes (seed 000).

    python examples/dynamic_batch_resnet.py                        # a generated ResNet
    python examples/dynamic_batch_resnet.py --model resnet18.onnx --image-size 224
    python examples/dynamic_batch_resnet.py --device cpu           # default: cuda if kiln finds a GPU

The ONNX model's batch dim is dynamic (-1 / a symbolic name). The engine is built
with the profile min=1, opt=4, max=8 and then run at batch sizes 1, 3, 8 and 6
through the TensorRT-style calls (set_input_shape, get_tensor_shape,
set_tensor_address, execute_async_v3) with buffers allocated per shape (device
memory, kiln.DeviceArray, on the GPU), and once more through context.infer().
Stream 0 makes execute_async_v3 wait for the run; pass a real cudaStream_t (e.g.
torch.cuda.current_stream().cuda_stream) to have it return at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

import kiln


def default_device() -> str:
    return "cuda" if kiln.cuda_device_count() > 0 else "cpu"


def build(onnx_path: str, input_name: str, image: int, logger: kiln.Logger, batches=(1, 4, 8),
          device: str = "cpu") -> kiln.Engine:
    builder = kiln.Builder(logger)
    network = builder.create_network(1 << int(kiln.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = kiln.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        raise SystemExit("\n".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE, 1 << 30)
    if device == "cuda":
        config.set_device(kiln.DeviceType.CUDA)
        # TF32 is on by default, as in TensorRT; off, FP32 layers match onnxruntime to 1e-4.
        config.clear_flag(kiln.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    lo, opt, hi = ((b, 3, image, image) for b in batches)
    profile.set_shape(input_name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    return kiln.Runtime(logger).deserialize_cuda_engine(serialized)


def run_batch(engine: kiln.Engine, context: kiln.ExecutionContext, batch: np.ndarray) -> dict[str, np.ndarray]:
    """The buffer-per-binding flow of the TensorRT samples: host buffers for a CPU
    engine, device buffers (uploaded input, outputs read back) for a CUDA one."""
    on_gpu = engine.device == "cuda"
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == kiln.TensorIOMode.INPUT:
            context.set_input_shape(name, batch.shape)
            host = np.ascontiguousarray(batch, dtype=kiln.nptype(engine.get_tensor_dtype(name)))
            buffers[name] = kiln.DeviceArray.from_host(host) if on_gpu else host
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == kiln.TensorIOMode.OUTPUT:
            shape = context.get_tensor_shape(name)  # known once the input shapes are set
            dtype = engine.get_tensor_dtype(name)
            buffers[name] = kiln.DeviceArray.empty(shape, dtype) if on_gpu else np.empty(shape, kiln.nptype(dtype))
    for name, buf in buffers.items():
        # Raw addresses, as with TensorRT: device pointers for a CUDA engine.
        context.set_tensor_address(name, buf.ptr if on_gpu else buf.ctypes.data)
    context.execute_async_v3(stream_handle=0)  # stream 0: returns when the run is done
    return {n: (b.copy_to_host() if on_gpu else b) for n, b in buffers.items()
            if engine.get_tensor_mode(n) == kiln.TensorIOMode.OUTPUT}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="ONNX model with a dynamic batch dim (default: a generated ResNet)")
    ap.add_argument("--input-name", default="input")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--device", choices=("cpu", "cuda"), default=default_device(),
                    help="where the engine runs (default: cuda when kiln finds a GPU)")
    args = ap.parse_args(argv)

    logger = kiln.Logger(kiln.Logger.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from example_models import save, tiny_resnet

            model = save(tiny_resnet(image=args.image_size), os.path.join(tmp, "tiny_resnet.onnx"))
        engine = build(model, args.input_name, args.image_size, logger, device=args.device)
        print("engine runs on", engine.device)
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
                # The same kernels run either way; on the GPU allow last-bit differences.
                same = np.array_equal(value, high_level[name]) or (
                    engine.device == "cuda" and np.allclose(value, high_level[name], rtol=1e-6, atol=1e-6))
                assert same, "infer() and execute_async_v3 differ"
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
