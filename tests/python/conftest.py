"""Shared helpers for the Python API tests: model building, onnxruntime references,
the kiln CLI. Models come from examples/example_models.py or are made inline."""

from __future__ import annotations

import glob
import os
import shutil
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, EXAMPLES)

import kiln  # noqa: E402


class RecordingLogger(kiln.ILogger):
    """Keeps every message it receives."""

    def __init__(self, min_severity=kiln.Logger.VERBOSE):
        kiln.ILogger.__init__(self, min_severity)
        self.messages = []

    def log(self, severity, msg):
        self.messages.append((severity, msg))


@pytest.fixture
def logger():
    return RecordingLogger(kiln.Logger.WARNING)


def parse(model, logger=None):
    """(builder, network) with `model` (ModelProto, bytes or path) parsed; fails the test on parse errors."""
    logger = logger or kiln.Logger(kiln.Logger.ERROR)
    builder = kiln.Builder(logger)
    network = builder.create_network()
    parser = kiln.OnnxParser(network, logger)
    if isinstance(model, (str, os.PathLike)):
        ok = parser.parse_from_file(model)
    else:
        ok = parser.parse(model if isinstance(model, (bytes, bytearray)) else model.SerializeToString())
    assert ok, [str(parser.get_error(i)) for i in range(parser.num_errors)]
    return builder, network


def build(model, profiles=None, logger=None):
    """Serialized engine of `model`; profiles: [{input: (min, opt, max)}, ...]."""
    logger = logger or kiln.Logger(kiln.Logger.ERROR)
    builder, network = parse(model, logger)
    config = builder.create_builder_config()
    for ranges in profiles or []:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in ranges.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
    return builder.build_serialized_network(network, config)


def engine_of(model, profiles=None, logger=None):
    logger = logger or kiln.Logger(kiln.Logger.ERROR)
    return kiln.Runtime(logger).deserialize_cuda_engine(build(model, profiles, logger))


def ort_run(model, feeds):
    """{output name: array} from onnxruntime."""
    import onnxruntime

    data = model if isinstance(model, (bytes, str)) else model.SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def assert_close(actual: dict, expected: dict, atol=1e-4, rtol=1e-4):
    assert set(actual) == set(expected)
    for name, ref in expected.items():
        got = actual[name]
        assert got.shape == ref.shape, (name, got.shape, ref.shape)
        assert got.dtype == ref.dtype, (name, got.dtype, ref.dtype)
        np.testing.assert_allclose(got, ref, atol=atol, rtol=rtol, err_msg=name)


def find_kiln_cli():
    """The `kiln` command: $KILN_CLI, else build/release/kiln, else the newest build/*/kiln."""
    path = os.environ.get("KILN_CLI")
    if path:
        return path
    release = os.path.join(ROOT, "build", "release", "kiln")
    if os.path.exists(release):
        return release
    found = [p for p in glob.glob(os.path.join(ROOT, "build", "*", "kiln")) if os.access(p, os.X_OK)]
    if found:
        return max(found, key=os.path.getmtime)
    return shutil.which("kiln")


@pytest.fixture
def kiln_cli():
    path = find_kiln_cli()
    if not path:
        pytest.skip("the kiln CLI is not built (set KILN_CLI or build build/release)")
    return path
