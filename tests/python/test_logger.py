"""Loggers: a Python subclass receives kiln's messages, filtered by severity."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

import kiln
from conftest import RecordingLogger, build, parse
from example_models import small_cnn


def test_subclass_receives_messages_from_parse_build_and_load():
    logger = RecordingLogger(kiln.Logger.VERBOSE)
    serialized = build(small_cnn(), logger=logger)
    kiln.Runtime(logger).deserialize_cuda_engine(serialized)
    texts = [m for _, m in logger.messages]
    assert any("parsed ONNX model" in t for t in texts), texts
    assert any(t.startswith("build:") for t in texts), texts
    assert any("deserialized engine" in t for t in texts), texts
    severities = {s for s, _ in logger.messages}
    assert severities <= set(kiln.Logger.Severity)
    assert kiln.Logger.VERBOSE in severities and kiln.Logger.INFO in severities


def test_min_severity_filters():
    quiet = RecordingLogger(kiln.Logger.WARNING)
    build(small_cnn(), logger=quiet)
    assert all(s <= kiln.Logger.WARNING for s, _ in quiet.messages)
    assert not any("parsed ONNX model" in m for _, m in quiet.messages)
    quiet.min_severity = kiln.Logger.Severity.INFO
    assert quiet.min_severity == kiln.Logger.INFO
    build(small_cnn(), logger=quiet)
    assert any("parsed ONNX model" in m for _, m in quiet.messages)


def test_tensorrt_style_subclass_and_warnings():
    class MyLogger(kiln.ILogger):
        def __init__(self):
            kiln.ILogger.__init__(self)
            self.seen = []

        def log(self, severity, msg):
            self.seen.append((severity, msg))

    logger = MyLogger()
    assert logger.min_severity == kiln.Logger.WARNING
    builder, network = parse(small_cnn(), logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE, 1)  # smaller than any arena: a warning
    builder.build_serialized_network(network, config)
    assert any(s == kiln.Logger.WARNING and "workspace" in m for s, m in logger.seen), logger.seen
    # Parse errors reach the logger too.
    kiln.OnnxParser(builder.create_network(), logger).parse(b"junk")
    assert any(s <= kiln.Logger.ERROR for s, _ in logger.seen)


def test_an_exception_in_log_is_reported_not_fatal(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: reported.append(info))

    class Broken(kiln.Logger):
        def log(self, severity, msg):
            raise ValueError("logger bug")

    serialized = build(small_cnn(), logger=Broken(kiln.Logger.INFO))
    assert len(serialized) > 0
    assert reported and isinstance(reported[0].exc_value, ValueError)


def test_builder_keeps_its_logger_alive():
    logger = RecordingLogger(kiln.Logger.INFO)
    builder = kiln.Builder(logger)
    network = builder.create_network()
    x = network.add_input("x", kiln.float32, (3,))
    network.mark_output(network.add_activation(x, kiln.ActivationType.TANH).get_output(0))
    messages = logger.messages
    del logger
    gc.collect()
    builder.build_serialized_network(network, builder.create_builder_config())
    assert any(m.startswith("build:") for _, m in messages)


def test_default_logger_prints_to_stderr(capfd):
    kiln.Logger().log(kiln.Logger.ERROR, "hello from the test")
    assert "hello from the test" in capfd.readouterr().err
