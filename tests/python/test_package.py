"""The installed package: type stubs shipped, TensorRT-style names present."""

from __future__ import annotations

import os

import kiln


def test_stubs_are_shipped():
    package = os.path.dirname(kiln.__file__)
    stub = os.path.join(package, "_kiln.pyi")
    assert os.path.exists(os.path.join(package, "py.typed"))
    assert os.path.exists(stub), "the build generates kiln/_kiln.pyi with nanobind.stubgen"
    text = open(stub).read()
    import ast

    ast.parse(text)  # valid Python syntax
    for name in ("class Builder", "def build_serialized_network", "class ExecutionContext", "def infer",
                 "def set_tensor_address", "def add_convolution", "class OnnxParser", "class DeviceArray",
                 "def execute_async_v3", "def cuda_device_count", "class RunTiming"):
        assert name in text, name


def test_tensorrt_names():
    assert kiln.__version__.count(".") == 2
    assert kiln.ILogger is kiln.Logger
    assert kiln.ICudaEngine is kiln.Engine and kiln.IExecutionContext is kiln.ExecutionContext
    assert kiln.INetworkDefinition is kiln.NetworkDefinition and kiln.ITensor is kiln.NetworkTensor
    assert kiln.Logger.WARNING is kiln.Logger.Severity.WARNING
    assert kiln.float32 is kiln.DataType.FLOAT is kiln.DataType.FLOAT32
    assert kiln.DataType.HALF is kiln.float16
    assert int(kiln.TensorIOMode.INPUT) == 1 and kiln.TensorIOMode.OUTPUT.value == 2
    assert kiln.volume((2, 3, 4)) == 24 and kiln.volume(()) == 1 and kiln.volume((-1, 3)) == -1
    assert kiln.dtype_size(kiln.float16) == 2 and kiln.dtype_name(kiln.int64) == "int64"
    assert 1 << int(kiln.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) == 1


def test_objects_work_in_with_blocks():
    logger = kiln.Logger()
    with kiln.Builder(logger) as builder, builder.create_network() as network, \
            kiln.OnnxParser(network, logger) as parser, builder.create_builder_config() as config:
        assert parser.num_errors == 0 and config.num_optimization_profiles == 0
    with kiln.Runtime(logger) as runtime:
        assert runtime is not None


def test_cuda_names_exist_everywhere():
    # Present in every build, GPU or not: code can ask before it builds a CUDA engine.
    assert kiln.cuda_device_count() >= 0
    assert (kiln.cuda_unavailable_reason() == "") == (kiln.cuda_device_count() > 0)
    assert int(kiln.DeviceType.CPU) == 0 and int(kiln.DeviceType.CUDA) == 1
    for name in ("use_cuda_graph", "timing", "last_timing", "profiling", "layer_times", "last_fallback_count"):
        assert hasattr(kiln.ExecutionContext, name), name
    assert kiln.Runtime(kiln.Logger(), device_index=0).device_index == 0
