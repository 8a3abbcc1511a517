"""CUDA engines from Python: torch CUDA tensors in and out without copies, caller
outputs written in place, execute_async_v3 on a torch stream, CUDA graphs, timing,
and clear errors. Skipped without a CUDA device (the reason is printed with -rs);
the torch tests also need torch with CUDA.

    python -m pytest tests/python/test_cuda.py -rs
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import kiln
from conftest import assert_close, ort_run, parse
from example_models import IR_VERSION, small_cnn, tiny_resnet

pytestmark = pytest.mark.skipif(kiln.cuda_device_count() == 0,
                                reason=f"no CUDA device: {kiln.cuda_unavailable_reason()}")


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA (a CPU-only build, or no device)")
    return torch


def cuda_engine(model, profiles=None, fp16=False, tf32=False, device_index=0):
    logger = kiln.Logger(kiln.Logger.ERROR)
    builder, network = parse(model, logger)
    config = builder.create_builder_config()
    config.set_device(kiln.DeviceType.CUDA)
    config.device_index = device_index
    if not tf32:  # exact FP32, to compare within 1e-4
        config.clear_flag(kiln.BuilderFlag.TF32)
    if fp16:
        config.set_flag(kiln.BuilderFlag.FP16)
    for ranges in profiles or []:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in ranges.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    return kiln.Runtime(logger, device_index=device_index).deserialize_cuda_engine(serialized)


@pytest.fixture(scope="module")
def cnn():
    model = small_cnn(seed=31)
    return model, cuda_engine(model)


def x_input(seed=0, batch=1):
    return np.random.default_rng(seed).standard_normal((batch, 3, 16, 16)).astype(np.float32)


def to_numpy(outputs):
    return {n: (v.cpu().numpy() if hasattr(v, "cpu") else v.copy_to_host() if hasattr(v, "copy_to_host") else v)
            for n, v in outputs.items()}


def test_device_queries_and_engine_device(cnn):
    _, engine = cnn
    assert kiln.cuda_unavailable_reason() == ""
    assert kiln.cuda_device_name(0) and len(kiln.cuda_device_capability(0)) == 2
    assert engine.device == "cuda" and engine.device_index == 0
    assert "cuda" in repr(engine)
    runtime = kiln.Runtime(kiln.Logger(), device_index=0)
    assert runtime.device_index == 0
    builder, network = parse(small_cnn())
    assert builder.platform_has_fast_fp16
    assert builder.platform_has_tf32 == (kiln.cuda_device_capability(0) >= (8, 0))
    cpu = kiln.Runtime(kiln.Logger()).deserialize_cuda_engine(
        builder.build_serialized_network(network, builder.create_builder_config()))
    assert cpu.device == "cpu" and cpu.device_index == -1


def test_host_arrays_on_a_cuda_engine(cnn):
    model, engine = cnn
    x = x_input(1)
    out = engine.create_execution_context().infer({"images": x})
    assert all(isinstance(v, np.ndarray) for v in out.values())
    assert_close(out, ort_run(model, {"images": x}))


def test_torch_in_torch_out(cnn, torch):
    model, engine = cnn
    context = engine.create_execution_context()
    x = torch.from_numpy(x_input(2)).cuda()
    out = context.infer({"images": x})
    for name, value in out.items():
        assert isinstance(value, torch.Tensor) and value.is_cuda and value.device == x.device, name
        assert value.is_contiguous() and value.dtype == torch.float32
    assert_close(to_numpy(out), ort_run(model, {"images": x.cpu().numpy()}))
    # The returned tensors own their memory: the next run does not overwrite them.
    kept = out["scores"].clone()
    context.infer({"images": x * 2})
    assert torch.equal(out["scores"], kept)


def test_outputs_written_in_place(cnn, torch):
    model, engine = cnn
    context = engine.create_execution_context()
    x = torch.from_numpy(x_input(3)).cuda()
    scores = torch.full((1, 5), float("nan"), device="cuda")
    features = torch.full((1, 6, 8, 8), float("nan"), device="cuda")
    pointers = scores.data_ptr(), features.data_ptr()
    out = context.infer({"images": x}, outputs={"scores": scores, "features": features})
    assert out["scores"] is scores and out["features"] is features
    assert (scores.data_ptr(), features.data_ptr()) == pointers
    assert_close(to_numpy(out), ort_run(model, {"images": x.cpu().numpy()}))
    # One output given, the other allocated like the inputs.
    only = torch.zeros((1, 5), device="cuda")
    out = context.infer({"images": x}, outputs={"scores": only})
    assert out["scores"] is only and isinstance(out["features"], torch.Tensor) and out["features"].is_cuda
    torch.testing.assert_close(only, scores, atol=1e-6, rtol=1e-6)


def test_host_inputs_into_device_outputs(cnn, torch):
    model, engine = cnn
    x = x_input(4)
    scores = torch.zeros((1, 5), device="cuda")
    out = engine.create_execution_context().infer({"images": x}, outputs={"scores": scores})
    assert out["scores"] is scores and isinstance(out["features"], np.ndarray)
    np.testing.assert_allclose(scores.cpu().numpy(), ort_run(model, {"images": x})["scores"], atol=1e-4, rtol=1e-4)


def test_inputs_from_a_side_stream_are_waited_for(cnn, torch):
    model, engine = cnn
    if not hasattr(torch.cuda, "_sleep"):
        pytest.skip("this torch has no torch.cuda._sleep")
    context = engine.create_execution_context()
    src = torch.from_numpy(x_input(5)).cuda()
    x = torch.zeros_like(src)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(200_000_000)  # x is written only after ~0.1 s of GPU time
        x.copy_(src)
        out = context.infer({"images": x})  # must wait for the side stream, not read zeros
    side.synchronize()
    assert_close(to_numpy(out), ort_run(model, {"images": src.cpu().numpy()}))


def test_fp16_engine(torch):
    model = small_cnn(seed=32)
    engine = cuda_engine(model, fp16=True)
    x = torch.from_numpy(x_input(6)).cuda()
    out = engine.create_execution_context().infer({"images": x})
    assert_close(to_numpy(out), ort_run(model, {"images": x.cpu().numpy()}), atol=1e-2, rtol=1e-2)


def test_execute_async_v3_on_a_torch_stream(cnn, torch):
    model, engine = cnn
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    x = torch.from_numpy(x_input(7)).cuda()
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        scores = torch.empty((1, 5), device="cuda")
        features = torch.empty((1, 6, 8, 8), device="cuda")
        for name, t in (("images", x), ("scores", scores), ("features", features)):
            assert context.set_tensor_address(name, t.data_ptr())
            assert context.get_tensor_address(name) == t.data_ptr()
        assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    assert_close({"scores": scores.cpu().numpy(), "features": features.cpu().numpy()},
                 ort_run(model, {"images": x.cpu().numpy()}))
    # Stream 0 (TensorRT's default stream) runs and waits.
    scores.zero_()
    assert context.execute_async_v3(0)
    np.testing.assert_allclose(scores.cpu().numpy(), ort_run(model, {"images": x.cpu().numpy()})["scores"],
                               atol=1e-4, rtol=1e-4)


def test_execute_v2_with_device_pointers_and_tensors(cnn, torch):
    model, engine = cnn
    context = engine.create_execution_context()
    x = torch.from_numpy(x_input(8)).cuda()
    scores = torch.empty((1, 5), device="cuda")
    features = torch.empty((1, 6, 8, 8), device="cuda")
    expected = ort_run(model, {"images": x.cpu().numpy()})
    assert context.execute_v2([x.data_ptr(), scores.data_ptr(), features.data_ptr()])
    assert_close({"scores": scores.cpu().numpy(), "features": features.cpu().numpy()}, expected)
    scores.zero_()
    assert context.execute_v2([x, scores, features])  # tensors themselves, kept alive by the context
    np.testing.assert_allclose(scores.cpu().numpy(), expected["scores"], atol=1e-4, rtol=1e-4)


def test_cuda_graph_on_and_off_agree(cnn, torch):
    _, engine = cnn
    plain, graphed = engine.create_execution_context(), engine.create_execution_context()
    assert not graphed.use_cuda_graph
    graphed.use_cuda_graph = True
    assert graphed.use_cuda_graph
    for seed in range(4):  # the first runs capture, the later ones replay
        x = torch.from_numpy(x_input(10 + seed)).cuda()
        want = plain.infer({"images": x})
        scores = torch.empty((1, 5), device="cuda")
        got = graphed.infer({"images": x}, outputs={"scores": scores})
        assert got["scores"] is scores
        for name in want:
            torch.testing.assert_close(got[name], want[name], atol=1e-6, rtol=1e-6)


def test_dynamic_batch(torch):
    model = tiny_resnet(image=16, seed=3)
    engine = cuda_engine(model, profiles=[{"input": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}])
    context = engine.create_execution_context()
    for n in (1, 3, 8, 6):
        x = torch.randn(n, 3, 16, 16, device="cuda")
        out = context.infer({"input": x})
        assert tuple(out["output"].shape) == (n, 10)
        assert_close(to_numpy(out), ort_run(model, {"input": x.cpu().numpy()}))
    with pytest.raises(kiln.OutOfRangeError, match="outside optimization profile 0 range"):
        context.infer({"input": torch.zeros(9, 3, 16, 16, device="cuda")})


def test_timing_and_profiling(cnn, torch):
    _, engine = cnn
    context = engine.create_execution_context()
    x = torch.from_numpy(x_input(20)).cuda()
    context.timing = True
    context.infer({"images": x})
    t = context.last_timing
    assert t.compute_ms > 0 and t.h2d_ms >= 0 and t.d2h_ms >= 0
    context.profiling = True
    context.infer({"images": x})
    times = context.layer_times
    assert times and all(isinstance(n, str) and ms >= 0 for n, ms in times)
    assert context.last_fallback_count >= 0


def test_device_arrays_without_torch(cnn):
    model, engine = cnn
    x = x_input(21)
    dx = kiln.DeviceArray.from_host(x)
    assert dx.shape == (1, 3, 16, 16) and dx.dtype == kiln.float32 and dx.nbytes == x.nbytes
    cai = dx.__cuda_array_interface__
    assert cai["version"] == 3 and cai["typestr"] == "<f4" and cai["data"] == (dx.ptr, False)
    assert cai["shape"] == (1, 3, 16, 16) and cai["strides"] is None
    assert dx.__dlpack_device__() == (2, 0) and int(dx) == dx.ptr
    out = engine.create_execution_context().infer({"images": dx})
    assert all(isinstance(v, kiln.DeviceArray) for v in out.values())
    assert_close(to_numpy(out), ort_run(model, {"images": x}))
    buf = kiln.DeviceArray.empty((1, 5))
    buf.copy_from_host(np.zeros((1, 5), np.float32))
    context = engine.create_execution_context()
    assert context.infer({"images": dx}, outputs={"scores": buf})["scores"] is buf
    np.testing.assert_allclose(buf.copy_to_host(), ort_run(model, {"images": x})["scores"], atol=1e-4)


def test_device_arrays_and_torch_share_memory(torch):
    a = kiln.DeviceArray.from_host(np.arange(6, dtype=np.float32).reshape(2, 3))
    t = torch.from_dlpack(a)
    assert t.is_cuda and t.data_ptr() == a.ptr and t.shape == (2, 3)
    t += 1
    np.testing.assert_array_equal(a.copy_to_host(), np.arange(1, 7, dtype=np.float32).reshape(2, 3))
    del a
    assert t.sum().item() == 21  # the tensor keeps the memory alive


def test_clear_errors(cnn, torch):
    _, engine = cnn
    context = engine.create_execution_context()
    x = torch.from_numpy(x_input(22)).cuda()
    with pytest.raises(kiln.InvalidArgumentError) as info:
        context.infer({"images": x.half()})
    assert str(info.value) == "input 'images' expects float32, got float16 (convert with .to(torch.float32))"
    with pytest.raises(kiln.InvalidArgumentError, match=r"input 'images' is not C-contiguous \(strides"):
        context.infer({"images": x.transpose(2, 3)})
    with pytest.raises(kiln.OutOfRangeError, match="input 'images' dim 2 = 15 but the engine was built for 16"):
        context.infer({"images": torch.zeros((1, 3, 15, 16), device="cuda")})
    with pytest.raises(kiln.InvalidArgumentError, match="output 'scores' is float32 but the array is int64"):
        context.infer({"images": x}, outputs={"scores": torch.zeros((1, 5), dtype=torch.int64, device="cuda")})
    with pytest.raises(kiln.InvalidArgumentError,
                       match="output 'scores' has shape 1x5 for these inputs but the array has shape 2x5"):
        context.infer({"images": x}, outputs={"scores": torch.zeros((2, 5), device="cuda")})
    with pytest.raises(kiln.InvalidArgumentError, match="require gradient"):
        context.infer({"images": x.clone().requires_grad_()})
    with pytest.raises(kiln.InvalidArgumentError, match="tensor 'images' is float32 but the array is float16"):
        context.set_tensor_address("images", x.half())
    # The context still works after the errors.
    assert_close(to_numpy(context.infer({"images": x})), to_numpy(engine.create_execution_context().infer(
        {"images": x})), atol=1e-6, rtol=1e-6)


def test_cpu_engine_refuses_cuda_tensors(torch):
    logger = kiln.Logger(kiln.Logger.ERROR)
    builder, network = parse(small_cnn(seed=33), logger)
    engine = kiln.Runtime(logger).deserialize_cuda_engine(
        builder.build_serialized_network(network, builder.create_builder_config()))
    context = engine.create_execution_context()
    x = torch.zeros((1, 3, 16, 16), device="cuda")
    with pytest.raises(kiln.DeviceMismatchError) as info:
        context.infer({"images": x})
    assert "input 'images' is in CUDA device memory (cuda:0), but this engine runs on the CPU; pass host memory" \
        in str(info.value)
    with pytest.raises(kiln.DeviceMismatchError, match="this engine runs on the CPU; pass host memory"):
        context.set_tensor_address("images", x)


def nonzero_model():
    graph = helper.make_graph(
        [helper.make_node("Greater", ["x", "zero"], ["mask"]), helper.make_node("NonZero", ["mask"], ["idx"])],
        "nonzero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, "n"])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


def test_data_dependent_output_shape(torch):
    engine = cuda_engine(nonzero_model())
    x = torch.tensor([[1.0, -1.0, 2.0], [-3.0, 4.0, 0.0]], device="cuda")
    out = engine.create_execution_context().infer({"x": x})["idx"]
    assert isinstance(out, torch.Tensor) and out.is_cuda
    np.testing.assert_array_equal(out.cpu().numpy(), np.array(np.nonzero(x.cpu().numpy() > 0)))
