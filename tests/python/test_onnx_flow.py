"""Seed 004's flow: ONNX -> parse -> build -> serialize -> file -> deserialize -> infer,
compared with onnxruntime within 1e-4."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln
from conftest import assert_close, build, engine_of, ort_run, parse
from example_models import IR_VERSION, small_cnn, tiny_resnet


def test_parse_build_serialize_file_deserialize_infer(tmp_path):
    model = small_cnn(seed=3, batch=2)
    onnx_path = tmp_path / "cnn.onnx"
    onnx.save(model, onnx_path)
    logger = kiln.Logger(kiln.Logger.ERROR)
    builder, network = parse(str(onnx_path), logger)
    assert (network.num_inputs, network.num_outputs) == (1, 2)
    assert network.get_input(0).name == "images"
    assert network.get_input(0).shape == (2, 3, 16, 16)
    assert network.get_input(0).dtype == kiln.float32
    config = builder.create_builder_config()
    config.set_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE, 1 << 26)
    assert config.get_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE) == 1 << 26
    serialized = builder.build_serialized_network(network, config)
    assert isinstance(serialized, bytes) and len(serialized) > 0

    engine_path = tmp_path / "cnn.engine"
    with open(engine_path, "wb") as f:
        f.write(serialized)
    runtime = kiln.Runtime(logger)
    with open(engine_path, "rb") as f:
        engine = runtime.deserialize_cuda_engine(f.read())
    assert engine.num_io_tensors == 3
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == ["images", "scores", "features"]
    assert [engine.get_tensor_mode(n) for n in names] == [kiln.TensorIOMode.INPUT, kiln.TensorIOMode.OUTPUT,
                                                           kiln.TensorIOMode.OUTPUT]
    assert engine.get_tensor_dtype("scores") == kiln.DataType.FLOAT
    assert engine.get_tensor_shape("features") == (2, 6, 8, 8)
    assert engine["scores"] == 1 and engine[1] == "scores"

    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    context = engine.create_execution_context()
    assert_close(context.infer({"images": x}), ort_run(model, {"images": x}))
    # The same engine through deserialize_file and the device-neutral name.
    again = runtime.deserialize_file(engine_path).create_execution_context().infer({"images": x})
    again2 = runtime.deserialize_engine(serialized).create_execution_context().infer({"images": x})
    for name in ("scores", "features"):
        np.testing.assert_array_equal(again[name], again2[name])


def test_resnet_with_batchnorm_and_residuals():
    model = tiny_resnet(seed=1)
    engine = engine_of(model, profiles=[{"input": ((2, 3, 32, 32),) * 3}])
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert_close(engine.create_execution_context().infer({"input": x}), ort_run(model, {"input": x}))


def _mixed_dtype_model():
    # float data, int64 indices, a bool mask; outputs of three dtypes.
    nodes = [
        helper.make_node("Gather", ["data", "indices"], ["gathered"], axis=0),
        helper.make_node("Where", ["mask", "gathered", "zero"], ["masked"]),
        helper.make_node("Cast", ["indices"], ["indices32"], to=TensorProto.INT32),
        helper.make_node("Greater", ["masked", "zero"], ["positive"]),
    ]
    graph = helper.make_graph(
        nodes, "mixed",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [5, 4]),
         helper.make_tensor_value_info("indices", TensorProto.INT64, [3]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, [3, 4])],
        [helper.make_tensor_value_info("masked", TensorProto.FLOAT, [3, 4]),
         helper.make_tensor_value_info("indices32", TensorProto.INT32, [3]),
         helper.make_tensor_value_info("positive", TensorProto.BOOL, [3, 4])],
        [numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


def test_integer_and_bool_inputs_and_outputs():
    model = _mixed_dtype_model()
    engine = engine_of(model)
    assert engine.get_tensor_dtype("indices") == kiln.int64
    assert engine.get_tensor_dtype("mask") == kiln.bool
    assert kiln.nptype(engine.get_tensor_dtype("mask")) == np.bool_
    rng = np.random.default_rng(2)
    feeds = {"data": rng.standard_normal((5, 4)).astype(np.float32),
             "indices": np.array([4, 0, 2], dtype=np.int64),
             "mask": rng.random((3, 4)) > 0.5}
    got = engine.create_execution_context().infer(feeds)
    ref = ort_run(model, feeds)
    assert_close(got, ref, atol=0, rtol=0)


def test_float16_model():
    graph = helper.make_graph(
        [helper.make_node("Mul", ["a", "b"], ["m"]), helper.make_node("Add", ["m", "a"], ["y"])], "half",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT16, [2, 8]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT16, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    rng = np.random.default_rng(3)
    feeds = {"a": rng.standard_normal((2, 8)).astype(np.float16), "b": rng.standard_normal(8).astype(np.float16)}
    got = engine_of(model).create_execution_context().infer(feeds)
    assert got["y"].dtype == np.float16
    np.testing.assert_allclose(got["y"].astype(np.float32), ort_run(model, feeds)["y"].astype(np.float32),
                               atol=1e-2, rtol=1e-2)


def test_external_data_is_found_beside_the_model(tmp_path):
    model = small_cnn(seed=4)
    x = np.random.default_rng(4).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = ort_run(model, {"images": x})
    path = tmp_path / "ext.onnx"
    # onnx.save moves the weights of the proto it is given: save a copy.
    onnx.save(onnx.ModelProto.FromString(model.SerializeToString()), path, save_as_external_data=True,
              all_tensors_to_one_file=True, location="ext.bin", size_threshold=0)
    assert (tmp_path / "ext.bin").exists()
    # From the file, and from bytes with the path telling where the weights are.
    assert_close(engine_of(str(path)).create_execution_context().infer({"images": x}), expected)
    data = path.read_bytes()
    builder = kiln.Builder(kiln.Logger(kiln.Logger.ERROR))
    network = builder.create_network()
    parser = kiln.OnnxParser(network, kiln.Logger(kiln.Logger.ERROR))
    assert parser.parse(data, path=str(path)), [str(e) for e in parser.errors]
    engine = kiln.Runtime(kiln.Logger()).deserialize_cuda_engine(builder.build_serialized_network(network))
    assert_close(engine.create_execution_context().infer({"images": x}), expected)
    # Without the path the external weights cannot be found: a parse error, not a crash.
    network2 = builder.create_network()
    parser2 = kiln.OnnxParser(network2, kiln.Logger(kiln.Logger.INTERNAL_ERROR))
    assert not parser2.parse(data)
    assert parser2.num_errors > 0 and "external" in str(parser2.get_error(0)).lower()


def test_tensorrt7_style_build_engine_and_serialize(tmp_path):
    model = small_cnn(seed=5)
    logger = kiln.Logger(kiln.Logger.ERROR)
    builder, network = parse(model, logger)
    config = builder.create_builder_config()
    config.max_workspace_size = 1 << 20
    assert config.get_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE) == 1 << 20
    config.set_metadata("author", "test")
    with builder.build_engine(network, config) as engine:
        assert engine.metadata == {"author": "test"}
        x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
        first = engine.create_execution_context().infer(x)  # a lone array for a one-input engine
        with engine.serialize() as blob:
            assert isinstance(blob, kiln.SerializedEngine) and blob.nbytes == len(blob)
            (tmp_path / "e.engine").write_bytes(blob)
    second = kiln.Runtime(logger).deserialize_file(str(tmp_path / "e.engine")).create_execution_context().infer(x)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert_close(first, ort_run(model, {"images": x}))


def test_engine_inspection():
    engine = engine_of(small_cnn())
    info = json.loads(engine.inspect_json())
    assert [t["name"] for t in info["io"]] == ["images", "scores", "features"]
    assert engine.num_layers == len(info["layers"]) > 0
    assert engine.weight_bytes > 0
    assert engine.device_memory_size == engine.activation_bytes
    assert engine.num_optimization_profiles == 1


def test_builder_flags_and_config():
    builder = kiln.Builder(kiln.Logger())
    assert builder.platform_has_fast_fp16 is (kiln.cuda_device_count() > 0)  # every CUDA GPU kiln runs on has it
    config = builder.create_builder_config()
    for flag in kiln.BuilderFlag:  # TF32 is on by default, as in TensorRT
        assert config.get_flag(flag) == (flag == kiln.BuilderFlag.TF32)
    config.clear_flag(kiln.BuilderFlag.TF32)
    config.set_flag(kiln.BuilderFlag.FP16)
    config.set_flag(kiln.BuilderFlag.INT8)
    assert config.get_flag(kiln.BuilderFlag.FP16) and config.get_flag(kiln.BuilderFlag.INT8)
    assert config.flags == (1 << int(kiln.BuilderFlag.FP16)) | (1 << int(kiln.BuilderFlag.INT8))
    assert config.device == kiln.DeviceType.CPU and config.device_index == 0
    config.device_index = 1
    assert config.device_index == 1
    config.set_device_index(0)
    config.clear_flag(kiln.BuilderFlag.INT8)
    assert not config.get_flag(kiln.BuilderFlag.INT8)
    config.builder_optimization_level = 1
    assert config.builder_optimization_level == 1
    # An FP16-flagged build still runs and stays close on the CPU.
    model = small_cnn(seed=6)
    _, network = parse(model)
    engine = kiln.Runtime(kiln.Logger()).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    x = np.random.default_rng(6).standard_normal((1, 3, 16, 16)).astype(np.float32)
    assert_close(engine.create_execution_context().infer({"images": x}), ort_run(model, {"images": x}), atol=2e-2,
                 rtol=2e-2)
