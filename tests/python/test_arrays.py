"""Arrays in and out: numpy, DLPack and __array_interface__ inputs without copies,
caller-provided outputs written in place, every supported dtype."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import kiln
from conftest import engine_of, ort_run
from example_models import IR_VERSION, small_cnn


@pytest.fixture(scope="module")
def cnn():
    model = small_cnn(seed=21)
    return model, engine_of(model).create_execution_context()


def x_input(seed=0):
    return np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32)


class DlpackOnly:
    """Exposes only the DLPack protocol (as a torch/jax CPU tensor would)."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


class ArrayInterfaceOnly:
    def __init__(self, a):
        self.a = a
        self.__array_interface__ = a.__array_interface__


@pytest.mark.parametrize("wrap", [DlpackOnly, ArrayInterfaceOnly, lambda a: a.copy(order="F"),
                                  lambda a: np.ascontiguousarray(a.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)])
def test_other_array_kinds(cnn, wrap):
    model, context = cnn
    x = x_input(1)
    expected = ort_run(model, {"images": x})
    got = context.infer({"images": wrap(x)})
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-4, rtol=1e-4)


def test_readonly_input(cnn):
    model, context = cnn
    x = x_input(2)
    x.flags.writeable = False
    np.testing.assert_allclose(context.infer({"images": x})["scores"], ort_run(model, {"images": x})["scores"],
                               atol=1e-4)


def test_outputs_written_in_place(cnn):
    model, context = cnn
    x = x_input(3)
    scores = np.full((1, 5), np.nan, np.float32)
    result = context.infer({"images": x}, outputs={"scores": scores})
    assert result["scores"] is scores  # the caller's array, not a copy
    assert result["features"].shape == (1, 6, 8, 8)  # the other output was allocated
    expected = ort_run(model, {"images": x})
    np.testing.assert_allclose(scores, expected["scores"], atol=1e-4)
    np.testing.assert_allclose(result["features"], expected["features"], atol=1e-4)


def test_returned_arrays_own_their_memory(cnn):
    _, context = cnn
    first = context.infer({"images": x_input(4)})
    kept = first["scores"].copy()
    second = context.infer({"images": x_input(5)})
    np.testing.assert_array_equal(first["scores"], kept)  # not overwritten by the next run
    assert not np.array_equal(first["scores"], second["scores"])
    assert first["scores"].flags.c_contiguous and first["scores"].flags.writeable


def test_results_outlive_the_context():
    context = engine_of(small_cnn(seed=22)).create_execution_context()
    out = context.infer({"images": x_input(6)})
    del context
    import gc

    gc.collect()
    assert np.isfinite(out["features"]).all() and out["features"].sum() != 0


def test_infer_restores_bound_addresses():
    model = small_cnn(seed=23)
    context = engine_of(model).create_execution_context()
    x = x_input(7)
    scores = np.zeros((1, 5), np.float32)
    features = np.zeros((1, 6, 8, 8), np.float32)
    context.set_tensor_address("images", x)
    context.set_tensor_address("scores", scores)
    context.set_tensor_address("features", features)
    context.infer({"images": x_input(8)})  # binds its own buffers for the call
    context.execute_async_v3()
    np.testing.assert_allclose(scores, ort_run(model, {"images": x})["scores"], atol=1e-4)


def identity_model(onnx_type, shape=(2, 3)):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                              [helper.make_tensor_value_info("x", onnx_type, shape)],
                              [helper.make_tensor_value_info("y", onnx_type, shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


DTYPES = [
    (TensorProto.FLOAT, np.float32), (TensorProto.DOUBLE, np.float64), (TensorProto.FLOAT16, np.float16),
    (TensorProto.INT8, np.int8), (TensorProto.INT16, np.int16), (TensorProto.INT32, np.int32),
    (TensorProto.INT64, np.int64), (TensorProto.UINT8, np.uint8), (TensorProto.UINT16, np.uint16),
    (TensorProto.UINT32, np.uint32), (TensorProto.UINT64, np.uint64), (TensorProto.BOOL, np.bool_),
]


@pytest.mark.parametrize("onnx_type,np_type", DTYPES, ids=[np.dtype(t).name for _, t in DTYPES])
def test_every_dtype_round_trips(onnx_type, np_type):
    engine = engine_of(identity_model(onnx_type))
    assert kiln.nptype(engine.get_tensor_dtype("x")) == np.dtype(np_type)
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((2, 3)) * 50).astype(np_type) if np_type != np.bool_ else rng.random((2, 3)) > 0.5
    y = engine.create_execution_context().infer({"x": x})["y"]
    assert y.dtype == np.dtype(np_type)
    np.testing.assert_array_equal(y, x)


def test_bfloat16_with_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    engine = engine_of(identity_model(TensorProto.BFLOAT16))
    assert kiln.nptype(kiln.bfloat16) == np.dtype(ml_dtypes.bfloat16)
    x = np.array([[1.5, -2.0, 3.25], [0.0, 1e3, -7.5]], dtype=ml_dtypes.bfloat16)
    y = engine.create_execution_context().infer({"x": x})["y"]
    assert y.dtype == np.dtype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(y.astype(np.float32), x.astype(np.float32))


def test_scalar_and_empty_tensors():
    scalar = engine_of(identity_model(TensorProto.FLOAT, shape=[])).create_execution_context()
    y = scalar.infer({"x": np.array(2.5, np.float32)})["y"]
    assert y.shape == () and y == 2.5
    empty = engine_of(identity_model(TensorProto.FLOAT, shape=[0, 3])).create_execution_context()
    y = empty.infer({"x": np.zeros((0, 3), np.float32)})["y"]
    assert y.shape == (0, 3)


def test_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    model, context = small_cnn(seed=24), engine_of(small_cnn(seed=24)).create_execution_context()
    x = torch.randn(1, 3, 16, 16)
    got = context.infer({"images": x})
    np.testing.assert_allclose(got["scores"], ort_run(model, {"images": x.numpy()})["scores"], atol=1e-4)


def test_data_dependent_output_into_a_given_array():
    graph = helper.make_graph(
        [helper.make_node("Greater", ["x", "zero"], ["mask"]), helper.make_node("NonZero", ["mask"], ["idx"]),
         helper.make_node("Relu", ["x"], ["y"])],
        "nonzero", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [2, "n"]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    context = engine_of(model).create_execution_context()
    x = np.array([[1, -1, 2], [-3, 4, 0]], np.float32)
    assert context.get_tensor_shape("idx") == (2, -1)
    idx = np.full((2, 3), -1, np.int64)
    out = context.infer({"x": x}, outputs={"idx": idx})
    assert out["idx"] is idx
    np.testing.assert_array_equal(idx, np.array(np.nonzero(x > 0)))
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0))
    with pytest.raises(kiln.InvalidArgumentError, match="output 'idx' has shape 2x3 for these inputs but the array "
                                                        "has shape 2x4"):
        context.infer({"x": x}, outputs={"idx": np.zeros((2, 4), np.int64)})
