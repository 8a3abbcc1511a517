"""Seed 000: a dynamic batch dim with min/opt/max profiles and changing batch sizes,
through the TensorRT-style calls and through infer()."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import kiln
from conftest import engine_of, ort_run
from example_models import tiny_resnet

IMAGE = 16
SHAPE = (3, IMAGE, IMAGE)


@pytest.fixture(scope="module")
def model():
    return tiny_resnet(image=IMAGE, seed=2)


@pytest.fixture(scope="module")
def engine(model):
    return engine_of(model, profiles=[{"input": ((1, *SHAPE), (4, *SHAPE), (8, *SHAPE))}])


def batch(n, seed=0):
    return np.random.default_rng(seed + n).standard_normal((n, *SHAPE)).astype(np.float32)


def test_engine_reports_the_profile(engine):
    assert engine.get_tensor_shape("input") == (-1, *SHAPE)
    assert engine.get_tensor_dim_names("input")[0] == "batch"
    assert engine.get_tensor_profile_shape("input", 0) == [(1, *SHAPE), (4, *SHAPE), (8, *SHAPE)]
    assert engine.get_tensor_shape("output") == (-1, 10)


def test_changing_batch_sizes_with_bound_buffers(engine, model):
    context = engine.create_execution_context()
    for n in (1, 3, 8, 6, 2):
        x = batch(n)
        assert context.set_input_shape("input", x.shape)
        assert context.get_tensor_shape("input") == x.shape
        assert context.get_tensor_shape("output") == (n, 10)
        out = np.empty(context.get_tensor_shape("output"), np.float32)
        # arrays (kept alive by the context) and raw addresses (as TensorRT users pass)
        if n % 2:
            context.set_tensor_address("input", x)
            context.set_tensor_address("output", out)
        else:
            context.set_tensor_address("input", x.ctypes.data)
            context.set_tensor_address("output", np.uint64(out.ctypes.data))
        assert context.get_tensor_address("output") == out.ctypes.data
        assert context.execute_async_v3(0)  # synchronous on the CPU: ready now
        np.testing.assert_allclose(out, ort_run(model, {"input": x})["output"], atol=1e-4, rtol=1e-4)


def test_changing_batch_sizes_with_infer(engine, model):
    context = engine.create_execution_context()
    for n in (8, 1, 5):
        x = batch(n, seed=10)
        y = context.infer({"input": x})["output"]
        assert y.shape == (n, 10)
        np.testing.assert_allclose(y, ort_run(model, {"input": x})["output"], atol=1e-4, rtol=1e-4)


def test_execute_v2_with_binding_addresses(engine, model):
    context = engine.create_execution_context()
    x = batch(3)
    context.set_input_shape("input", x.shape)
    out = np.empty(context.get_tensor_shape("output"), np.float32)
    assert context.execute_v2([x.ctypes.data, out.ctypes.data])
    np.testing.assert_allclose(out, ort_run(model, {"input": x})["output"], atol=1e-4, rtol=1e-4)
    with pytest.raises(kiln.InvalidArgumentError, match="got 1 bindings"):
        context.execute_v2([x.ctypes.data])


def test_tensorrt8_binding_api(engine):
    context = engine.create_execution_context()
    assert engine.num_bindings == 2
    assert engine.get_binding_name(0) == "input" and engine.get_binding_index("output") == 1
    assert engine.binding_is_input(0) and not engine.binding_is_input("output")
    assert engine.get_binding_shape(0) == (-1, *SHAPE)
    assert engine.get_binding_dtype(1) == kiln.float32
    assert engine.get_profile_shape(0, 0)[2] == (8, *SHAPE)
    context.set_binding_shape(0, (7, *SHAPE))
    assert context.get_binding_shape(1) == (7, 10)


def test_shapes_outside_the_profile_are_refused(engine):
    context = engine.create_execution_context()
    with pytest.raises(kiln.OutOfRangeError, match=r"dim 0 \(batch\) = 9 is outside optimization profile 0 range \[1, 8\]"):
        context.set_input_shape("input", (9, *SHAPE))
    with pytest.raises(ValueError, match="= 12 but the engine was built for 16"):
        context.infer({"input": np.zeros((2, 3, 12, IMAGE), np.float32)})
    with pytest.raises(kiln.InvalidArgumentError, match="rank 4"):
        context.set_input_shape("input", (2, 3, IMAGE))
    with pytest.raises(kiln.OutOfRangeError, match=r"\[1, 8\]"):
        context.infer({"input": np.zeros((0, *SHAPE), np.float32)})


def test_two_profiles(model):
    engine = engine_of(model, profiles=[{"input": ((1, *SHAPE), (1, *SHAPE), (2, *SHAPE))},
                                        {"input": ((3, *SHAPE), (4, *SHAPE), (8, *SHAPE))}])
    assert engine.num_optimization_profiles == 2
    assert engine.get_tensor_profile_shape("input", 1)[0] == (3, *SHAPE)
    with pytest.raises(kiln.NotFoundError, match="profile 2"):
        engine.get_tensor_profile_shape("input", 2)
    context = engine.create_execution_context()
    assert context.active_optimization_profile == 0
    with pytest.raises(kiln.OutOfRangeError):
        context.set_input_shape("input", (5, *SHAPE))
    assert context.set_optimization_profile_async(1, 0)
    assert context.active_optimization_profile == 1
    x = batch(5)
    np.testing.assert_allclose(context.infer({"input": x})["output"], ort_run(model, {"input": x})["output"],
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(kiln.OutOfRangeError, match="does not exist"):
        context.active_optimization_profile = 2


def test_contexts_run_concurrently(engine, model):
    # The GIL is released while executing: contexts on several threads all finish correctly.
    inputs = [batch(n, seed=20) for n in (1, 2, 4, 8)]
    expected = [ort_run(model, {"input": x})["output"] for x in inputs]
    results = [None] * len(inputs)

    def work(i):
        context = engine.create_execution_context()
        for _ in range(3):
            results[i] = context.infer({"input": inputs[i]})["output"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, ref in zip(results, expected):
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
