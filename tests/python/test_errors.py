"""C++ errors become Python exceptions carrying kiln's message; dtype and shape
errors are clear; malformed inputs never crash."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from conftest import build, engine_of
from example_models import small_cnn


@pytest.fixture(scope="module")
def context():
    return engine_of(small_cnn(seed=11)).create_execution_context()


def good_input():
    return np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)


def test_exception_hierarchy():
    assert issubclass(kiln.KilnError, RuntimeError)
    assert issubclass(kiln.InvalidArgumentError, ValueError)
    assert issubclass(kiln.OutOfRangeError, ValueError)
    assert issubclass(kiln.NotFoundError, LookupError)
    assert issubclass(kiln.UnsupportedError, NotImplementedError)
    assert issubclass(kiln.IoError, OSError)
    for cls in (kiln.InvalidArgumentError, kiln.NotFoundError, kiln.UnsupportedError, kiln.InvalidModelError,
                kiln.VersionMismatchError, kiln.DeviceMismatchError, kiln.OutOfRangeError, kiln.OutOfMemoryError,
                kiln.IoError, kiln.InternalError):
        assert issubclass(cls, kiln.KilnError)


def test_wrong_dtype(context):
    with pytest.raises(kiln.InvalidArgumentError) as info:
        context.infer({"images": good_input().astype(np.float64)})
    assert str(info.value) == "input 'images' expects float32, got float64 (convert with .astype(numpy.float32))"
    assert info.value.code == kiln.ErrorCode.INVALID_ARGUMENT
    with pytest.raises(kiln.InvalidArgumentError, match="expects float32, got int64"):
        context.infer({"images": np.zeros((1, 3, 16, 16), np.int64)})


def test_wrong_shapes(context):
    with pytest.raises(kiln.InvalidArgumentError, match=r"input 'images' has rank 4, got dims 3x16x16 of rank 3"):
        context.infer({"images": good_input()[0]})
    with pytest.raises(kiln.OutOfRangeError,
                       match=r"input 'images' dim 2 = 15 but the engine was built for 16") as info:
        context.infer({"images": np.zeros((1, 3, 15, 16), np.float32)})
    assert info.value.code == kiln.ErrorCode.OUT_OF_RANGE


def test_wrong_names(context):
    with pytest.raises(kiln.NotFoundError, match=r"'image' is not an input of this engine \(inputs: images\)"):
        context.infer({"image": good_input()})
    with pytest.raises(kiln.NotFoundError, match="missing input 'images'"):
        context.infer({})
    with pytest.raises(kiln.NotFoundError, match="'nope' is not an input or output"):
        context.set_tensor_address("nope", 0)
    with pytest.raises(kiln.NotFoundError, match="'nope' is not an input or output"):
        context.get_tensor_shape("nope")
    with pytest.raises(IndexError):
        context.engine.get_tensor_name(3)
    assert context.engine.get_tensor_mode("nope") == kiln.TensorIOMode.NONE
    with pytest.raises(TypeError):
        context.engine[1.5]
    with pytest.raises(kiln.NotFoundError):
        context.engine["nope"]


def test_not_an_array(context):
    with pytest.raises(kiln.InvalidArgumentError, match="infer\\(\\) takes a dict"):
        context.infer([good_input()])
    with pytest.raises(kiln.InvalidArgumentError, match="must be an array"):
        context.infer({"images": object()})
    with pytest.raises(kiln.InvalidArgumentError, match="must be an array"):
        context.infer({"images": "a string"})


def test_outputs_that_do_not_fit(context):
    x = good_input()
    with pytest.raises(kiln.InvalidArgumentError, match=r"output 'scores' has shape 1x5 .* array has shape 1x6"):
        context.infer({"images": x}, outputs={"scores": np.empty((1, 6), np.float32)})
    with pytest.raises(kiln.InvalidArgumentError, match="output 'scores' is float32 but the array is float64"):
        context.infer({"images": x}, outputs={"scores": np.empty((1, 5), np.float64)})
    readonly = np.empty((1, 5), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(kiln.InvalidArgumentError, match="writable C-contiguous"):
        context.infer({"images": x}, outputs={"scores": readonly})
    with pytest.raises(kiln.NotFoundError, match="not an output"):
        context.infer({"images": x}, outputs={"images": np.empty((1, 5), np.float32)})


def test_execute_without_buffers():
    context = engine_of(small_cnn(seed=12)).create_execution_context()
    with pytest.raises(kiln.NotFoundError, match="input 'images' has no buffer bound"):
        context.execute_async_v3(0)


def test_bad_onnx_is_a_parse_error_not_a_crash(tmp_path):
    logger = kiln.Logger(kiln.Logger.INTERNAL_ERROR)
    network = kiln.Builder(logger).create_network()
    parser = kiln.OnnxParser(network, logger)
    assert not parser.parse(b"this is not an onnx model")
    assert parser.num_errors >= 1
    assert "not a valid ONNX ModelProto" in str(parser.get_error(0))
    assert "not a valid ONNX ModelProto" in parser.get_error(0).desc()
    assert parser.get_error(0).node() == -1
    with pytest.raises(IndexError):
        parser.get_error(parser.num_errors)
    truncated = small_cnn().SerializeToString()[:100]
    network = kiln.Builder(logger).create_network()
    parser = kiln.OnnxParser(network, logger)
    assert not parser.parse(truncated)
    assert not kiln.OnnxParser(kiln.NetworkDefinition(), logger).parse_from_file(str(tmp_path / "missing.onnx"))
    with pytest.raises(kiln.InvalidArgumentError, match="bytes-like"):
        parser.parse("a str is not bytes")


def test_unsupported_op_names_the_node():
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    logger = kiln.Logger(kiln.Logger.INTERNAL_ERROR)
    network = kiln.Builder(logger).create_network()
    parser = kiln.OnnxParser(network, logger)
    assert not parser.parse(model.SerializeToString())
    err = parser.errors[0]
    assert err.node_name == "mystery" and err.op_type == "NoSuchOp"
    assert "mystery" in str(err) and "NoSuchOp" in str(err)


def test_bad_engine_bytes(tmp_path):
    runtime = kiln.Runtime(kiln.Logger(kiln.Logger.INTERNAL_ERROR))
    with pytest.raises(kiln.KilnError) as info:
        runtime.deserialize_cuda_engine(b"garbage" * 20)
    assert str(info.value)
    good = build(small_cnn())
    with pytest.raises(kiln.KilnError):
        runtime.deserialize_cuda_engine(good[: len(good) // 2])
    corrupted = bytearray(good)
    corrupted[-10] ^= 0xFF
    with pytest.raises(kiln.KilnError):
        runtime.deserialize_cuda_engine(bytes(corrupted))
    with pytest.raises(kiln.IoError, match="cannot open engine file"):
        runtime.deserialize_file(str(tmp_path / "missing.engine"))
    with pytest.raises(OSError):
        runtime.deserialize_file(str(tmp_path / "missing.engine"))


def test_profile_and_build_errors():
    builder = kiln.Builder(kiln.Logger(kiln.Logger.INTERNAL_ERROR))
    profile = builder.create_optimization_profile()
    with pytest.raises(kiln.InvalidArgumentError, match="need 0 <= min <= opt <= max"):
        profile.set_shape("x", (4, 3), (2, 3), (8, 3))
    with pytest.raises(kiln.InvalidArgumentError, match="same rank"):
        profile.set_shape("x", (1, 3), (2,), (8, 3))
    net = builder.create_network()
    x = net.add_input("x", kiln.float32, (-1, 3))
    net.mark_output(net.add_activation(x, kiln.ActivationType.RELU).get_output(0))
    config = builder.create_builder_config()
    with pytest.raises(kiln.InvalidArgumentError, match="gives no range"):
        builder.build_serialized_network(net, config)
    bad = builder.create_optimization_profile()
    bad.set_shape("y", (1, 3), (1, 3), (1, 3))
    config.add_optimization_profile(bad)
    with pytest.raises(kiln.InvalidArgumentError, match="not a network input"):
        builder.build_serialized_network(net, config)


@pytest.mark.skipif(kiln.cuda_device_count() > 0, reason="a CUDA device is present (tests/python/test_cuda.py)")
def test_cuda_build_without_a_gpu_says_why():
    builder = kiln.Builder(kiln.Logger(kiln.Logger.INTERNAL_ERROR))
    net = builder.create_network()
    net.mark_output(net.add_activation(net.add_input("x", kiln.float32, (2,)), kiln.ActivationType.RELU).get_output(0))
    config = builder.create_builder_config()
    config.set_device(kiln.DeviceType.CUDA)
    assert config.device == kiln.DeviceType.CUDA and config.default_device_type == kiln.DeviceType.CUDA
    reason = kiln.cuda_unavailable_reason()
    assert reason
    with pytest.raises(kiln.UnsupportedError) as info:
        builder.build_serialized_network(net, config)
    assert str(info.value) == "cannot build a CUDA engine: " + reason
    with pytest.raises(kiln.KilnError, match="CUDA device 0 does not exist"):
        kiln.DeviceArray.empty((2, 3))
    assert not builder.platform_has_fast_fp16 and not builder.platform_has_tf32


class FakeCudaArray:
    """Looks like a CUDA tensor (CuPy / Numba style)."""

    __cuda_array_interface__ = {"shape": (1, 3, 16, 16), "typestr": "<f4", "data": (0, False), "version": 3}


class FakeDlpackCuda:
    """Looks like a torch CUDA tensor through DLPack."""

    def __dlpack__(self, **kwargs):
        raise AssertionError("must not be imported")

    def __dlpack_device__(self):
        return (2, 0)


@pytest.mark.parametrize("tensor", [FakeCudaArray(), FakeDlpackCuda()])
def test_cpu_engines_refuse_cuda_tensors_clearly(context, tensor):
    with pytest.raises(kiln.DeviceMismatchError, match="this engine runs on the CPU; pass host memory") as info:
        context.infer({"images": tensor})
    assert str(info.value).startswith("input 'images' is in CUDA device memory")
    assert info.value.code == kiln.ErrorCode.DEVICE_MISMATCH
    with pytest.raises(kiln.DeviceMismatchError, match="this engine runs on the CPU; pass host memory"):
        context.set_tensor_address("images", tensor)
    with pytest.raises(kiln.DeviceMismatchError, match="output 'scores' is in CUDA device memory"):
        context.infer({"images": good_input()}, outputs={"scores": tensor})


@pytest.mark.parametrize("tensor", [FakeCudaArray(), FakeDlpackCuda()])
def test_cuda_weights_are_refused_clearly(tensor):
    net = kiln.Builder(kiln.Logger()).create_network()
    x = net.add_input("x", kiln.float32, (1, 16))
    with pytest.raises(kiln.UnsupportedError, match="is in CUDA device memory; kiln reads it from host memory"):
        net.add_constant((1, 3, 16, 16), tensor)
    assert x is not None
