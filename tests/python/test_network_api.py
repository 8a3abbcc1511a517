"""Networks built from Python with numpy weights (seed 001): LeNet against a numpy
reference, each layer kind against numpy, and API misuse raising at once."""

from __future__ import annotations

import gc
import math

import numpy as np
import pytest

import kiln
import network_from_scratch as lenet


def run_network(populate, feeds, profiles=None):
    """Builds a network filled by populate(network) and runs it once."""
    logger = kiln.Logger(kiln.Logger.ERROR)
    builder = kiln.Builder(logger)
    network = builder.create_network()
    populate(network)
    config = builder.create_builder_config()
    engine = kiln.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(network, config))
    return engine.create_execution_context().infer(feeds)


def test_lenet_from_numpy_weights_matches_numpy():
    weights = lenet.random_weights(seed=7)
    x = np.random.default_rng(7).random(lenet.INPUT_SHAPE, dtype=np.float32)
    out = run_network(lambda n: lenet.populate_network(n, weights), {lenet.INPUT_NAME: x})
    logits, prob = lenet.reference(x, weights)
    assert set(out) == {"logits", lenet.OUTPUT_NAME}
    assert out[lenet.OUTPUT_NAME].shape == (1, 10)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(out[lenet.OUTPUT_NAME], prob, atol=1e-4, rtol=1e-4)


def test_float64_weights_are_cast_to_the_network_type():
    weights = {k: v.astype(np.float64) for k, v in lenet.random_weights(seed=8).items()}
    weights["fc2.weight"] = weights["fc2.weight"].astype(np.float32)  # add_constant keeps its dtype
    weights["fc2.bias"] = weights["fc2.bias"].astype(np.float32)
    x = np.random.default_rng(8).random(lenet.INPUT_SHAPE, dtype=np.float32)
    out = run_network(lambda n: lenet.populate_network(n, weights), {lenet.INPUT_NAME: x})
    np.testing.assert_allclose(out["logits"], lenet.reference(x, weights)[0], atol=1e-4, rtol=1e-4)


class DlpackOnly:
    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_weights_from_any_array_kind():
    rng = np.random.default_rng(16)
    w = rng.standard_normal((3, 4))  # float64, given through DLPack only
    b = rng.standard_normal(3).astype(np.float32).tolist()  # a plain list
    x = rng.standard_normal((2, 4)).astype(np.float32)

    def populate(net):
        fc = net.add_fully_connected(net.add_input("x", kiln.float32, x.shape), 3, DlpackOnly(w), b)
        net.mark_output(fc.get_output(0))

    (y,) = run_network(populate, {"x": x}).values()
    np.testing.assert_allclose(y, x @ w.T + np.asarray(b), atol=1e-5)


def conv_reference(x, w, b, stride, pad, dilation, groups):
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, k, oh, ow))
    kpg = k // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, i * dilation[0]: i * dilation[0] + stride[0] * oh: stride[0],
                           j * dilation[1]: j * dilation[1] + stride[1] * ow: stride[1]]
                y[:, g * kpg:(g + 1) * kpg] += np.einsum("nchw,kc->nkhw", patch, w[g * kpg:(g + 1) * kpg, :, i, j])
    return y + b.reshape(1, k, 1, 1)


def test_convolution_settings():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 11, 9)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)

    def populate(net):
        t = net.add_input("x", kiln.float32, x.shape)
        conv = net.add_convolution_nd(t, 6, (3, 3), w, b)
        conv.stride_nd = (2, 1)
        conv.padding_nd = (1, 2)
        conv.dilation_nd = (1, 2)
        conv.num_groups = 2
        assert conv.stride == (2, 1) and conv.padding == (1, 2) and conv.num_groups == 2
        net.mark_output(conv.get_output(0))

    out = run_network(populate, {"x": x})
    (y,) = out.values()
    np.testing.assert_allclose(y, conv_reference(x, w, b, (2, 1), (1, 2), (1, 2), 2), atol=1e-4, rtol=1e-4)


def test_pooling():
    x = np.random.default_rng(10).standard_normal((1, 3, 8, 8)).astype(np.float32)

    def populate(net):
        t = net.add_input("x", kiln.float32, x.shape)
        mx = net.add_pooling(t, kiln.PoolingType.MAX, (2, 2))
        mx.stride = (2, 2)
        avg = net.add_pooling_nd(t, kiln.PoolingType.AVERAGE, (4, 4))
        avg.stride_nd = (4, 4)
        mx.get_output(0).name = "max"
        avg.get_output(0).name = "avg"
        net.mark_output(mx.get_output(0))
        net.mark_output(avg.get_output(0))

    out = run_network(populate, {"x": x})
    np.testing.assert_allclose(out["max"], x.reshape(1, 3, 4, 2, 4, 2).max(axis=(3, 5)), atol=1e-6)
    np.testing.assert_allclose(out["avg"], x.reshape(1, 3, 2, 4, 2, 4).mean(axis=(3, 5)), atol=1e-5)


@pytest.mark.parametrize("op_a,op_b", [("NONE", "NONE"), ("TRANSPOSE", "NONE"), ("NONE", "TRANSPOSE"),
                                       ("TRANSPOSE", "TRANSPOSE")])
def test_matrix_multiply(op_a, op_b):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((2, 3, 4) if op_a == "NONE" else (2, 4, 3)).astype(np.float32)
    b = rng.standard_normal((4, 5) if op_b == "NONE" else (5, 4)).astype(np.float32)

    def populate(net):
        ta = net.add_input("a", kiln.float32, a.shape)
        tb = net.add_input("b", kiln.float32, b.shape)
        mm = net.add_matrix_multiply(ta, kiln.MatrixOperation[op_a], tb, kiln.MatrixOperation[op_b])
        net.mark_output(mm.get_output(0))

    (y,) = run_network(populate, {"a": a, "b": b}).values()
    ea = a if op_a == "NONE" else a.swapaxes(-1, -2)
    eb = b if op_b == "NONE" else b.T
    np.testing.assert_allclose(y, ea @ eb, atol=1e-4, rtol=1e-4)


ELEMENTWISE = {
    "SUM": np.add, "SUB": np.subtract, "PROD": np.multiply, "DIV": np.divide, "MAX": np.maximum,
    "MIN": np.minimum, "POW": np.power, "EQUAL": np.equal, "LESS": np.less, "GREATER": np.greater,
}


@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
def test_elementwise_with_broadcasting(op):
    rng = np.random.default_rng(12)
    a = rng.uniform(0.5, 2.0, (2, 3, 4)).astype(np.float32)
    b = rng.uniform(0.5, 2.0, (3, 1)).astype(np.float32)
    if op == "EQUAL":
        b[1, 0] = a[0, 1, 2]

    def populate(net):
        y = net.add_elementwise(net.add_input("a", kiln.float32, a.shape), net.add_input("b", kiln.float32, b.shape),
                                kiln.ElementWiseOperation[op])
        net.mark_output(y.get_output(0))

    (y,) = run_network(populate, {"a": a, "b": b}).values()
    expected = ELEMENTWISE[op](a, b)
    assert y.dtype == expected.dtype
    np.testing.assert_allclose(y, expected, rtol=1e-5)


def _gelu(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


ACTIVATIONS = {
    "RELU": (0, 0, lambda x: np.maximum(x, 0)),
    "SIGMOID": (0, 0, lambda x: 1 / (1 + np.exp(-x))),
    "TANH": (0, 0, np.tanh),
    "LEAKY_RELU": (0.1, 0, lambda x: np.where(x > 0, x, 0.1 * x)),
    "ELU": (0.5, 0, lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    "SELU": (0, 0, lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1))),
    "SOFTPLUS": (2.0, 3.0, lambda x: 2.0 * np.log1p(np.exp(3.0 * x))),
    "GELU_ERF": (0, 0, _gelu),
    "SILU": (0, 0, lambda x: x / (1 + np.exp(-x))),
    "CLIP": (-0.5, 0.7, lambda x: np.clip(x, -0.5, 0.7)),
    "HARD_SIGMOID": (0.3, 0.4, lambda x: np.clip(0.3 * x + 0.4, 0, 1)),
}


@pytest.mark.parametrize("kind", sorted(ACTIVATIONS))
def test_activation(kind):
    alpha, beta, fn = ACTIVATIONS[kind]
    x = np.random.default_rng(13).standard_normal((3, 7)).astype(np.float32)

    def populate(net):
        act = net.add_activation(net.add_input("x", kiln.float32, x.shape), kiln.ActivationType[kind], alpha, beta)
        net.mark_output(act.get_output(0))

    (y,) = run_network(populate, {"x": x}).values()
    np.testing.assert_allclose(y, fn(x.astype(np.float64)), atol=1e-5, rtol=1e-4)


def test_shuffle_softmax_concat_constant():
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    c = rng.standard_normal((2, 4, 5)).astype(np.float32)

    def populate(net):
        t = net.add_input("x", kiln.float32, x.shape)
        sh = net.add_shuffle(t)
        sh.first_transpose = (0, 2, 1)
        sh.reshape_dims = (0, 4, -1)
        assert sh.first_transpose == (0, 2, 1) and sh.reshape_dims == (0, 4, -1)
        const = net.add_constant(c)  # kiln's form: the array itself
        cat = net.add_concatenation([sh.get_output(0), const.get_output(0)], axis=2)
        assert cat.get_output(0).shape == (2, 4, 8)
        sm = net.add_softmax(cat.get_output(0))
        sm.axes = 1 << 1
        assert sm.axes == 2 and sm.axis == 1
        sm.get_output(0).name = "y"
        net.mark_output(sm.get_output(0))

    out = run_network(populate, {"x": x})
    cat = np.concatenate([x.transpose(0, 2, 1), c], axis=2)
    e = np.exp(cat - cat.max(axis=1, keepdims=True))
    np.testing.assert_allclose(out["y"], e / e.sum(axis=1, keepdims=True), atol=1e-5)


def test_dynamic_input_in_a_network():
    w = np.random.default_rng(15).standard_normal((3, 6)).astype(np.float32)
    logger = kiln.Logger(kiln.Logger.ERROR)
    builder = kiln.Builder(logger)
    net = builder.create_network()
    x = net.add_input("x", kiln.float32, (-1, 6))
    assert x.shape == (-1, 6)
    fc = net.add_fully_connected(x, 3, w)
    fc.get_output(0).name = "y"
    net.mark_output(fc.get_output(0))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (1, 6), (2, 6), (5, 6))
    assert profile.get_shape("x") == [(1, 6), (2, 6), (5, 6)]
    config.add_optimization_profile(profile)
    context = kiln.Runtime(logger).deserialize_cuda_engine(builder.build_serialized_network(net, config)) \
        .create_execution_context()
    for n in (1, 5, 3):
        xs = np.random.default_rng(n).standard_normal((n, 6)).astype(np.float32)
        np.testing.assert_allclose(context.infer({"x": xs})["y"], xs @ w.T, atol=1e-5)


# ------------------------------------------------------------------ misuse raises at once

def test_errors_raise_where_they_happen():
    net = kiln.Builder(kiln.Logger()).create_network()
    x = net.add_input("x", kiln.float32, (1, 3, 8, 8))
    with pytest.raises(kiln.InvalidArgumentError, match="already used"):
        net.add_input("x", kiln.float32, (1,))
    with pytest.raises(kiln.InvalidArgumentError, match="negative"):
        net.add_input("bad", kiln.float32, (1, -3))
    with pytest.raises(kiln.InvalidArgumentError, match="kernel has 10 values"):
        net.add_convolution(x, 4, (3, 3), np.zeros(10, np.float32))
    with pytest.raises(kiln.InvalidArgumentError, match="bias has 3 values"):
        net.add_convolution(x, 4, (3, 3), np.ones((4, 3, 3, 3), np.float32), np.ones(3, np.float32))
    sm = net.add_softmax(x)
    with pytest.raises(kiln.InvalidArgumentError, match="set_stride applies to convolution and pooling"):
        sm.stride = (2, 2)
    assert sm.stride is None  # a refused setting is not recorded
    with pytest.raises(kiln.InvalidArgumentError, match="exactly one bit"):
        sm.axes = 3
    with pytest.raises(kiln.InvalidArgumentError, match="taken"):
        sm.get_output(0).name = "x"
    with pytest.raises(TypeError):
        net.mark_output(None)
    with pytest.raises(kiln.InvalidArgumentError, match="must be a kiln.NetworkTensor"):
        net.add_softmax("x")
    with pytest.raises(kiln.InvalidArgumentError, match="holds 6 values"):
        net.add_constant((2, 3), np.zeros(5, np.float32))
    with pytest.raises(IndexError):
        sm.get_output(1)
    with pytest.raises(IndexError):
        net.get_input(1)
    assert net.find_tensor("nope") is None
    assert len(net.errors) >= 6  # each was also collected, as the C++ API does


def test_build_without_outputs_fails_clearly():
    builder = kiln.Builder(kiln.Logger())
    net = builder.create_network()
    net.add_input("x", kiln.float32, (2,))
    with pytest.raises(kiln.InvalidArgumentError, match="no outputs"):
        builder.build_serialized_network(net, builder.create_builder_config())


def test_handles_keep_their_network_alive():
    def make():
        net = kiln.Builder(kiln.Logger()).create_network()
        x = net.add_input("x", kiln.float32, (2, 2))
        return net.add_activation(x, kiln.ActivationType.RELU)

    layer = make()
    gc.collect()
    out = layer.get_output(0)
    del layer
    gc.collect()
    assert out.shape == (2, 2) and out.dtype == kiln.float32
    out.name = "renamed"
    assert out.name == "renamed"
