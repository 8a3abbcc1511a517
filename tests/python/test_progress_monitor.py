"""Build progress: a Python ProgressMonitor sees the builder's phases and can cancel."""

from __future__ import annotations

import pytest

import kiln
from conftest import parse
from example_models import small_cnn


class Recorder(kiln.IProgressMonitor):
    def __init__(self, cancel_phase=None):
        kiln.IProgressMonitor.__init__(self)
        self.events = []
        self.cancel_phase = cancel_phase

    def phase_start(self, phase_name, parent_phase, num_steps):
        self.events.append(("start", phase_name, parent_phase, num_steps))

    def step_complete(self, phase_name, step):
        self.events.append(("step", phase_name, step))
        return phase_name != self.cancel_phase

    def phase_finish(self, phase_name):
        self.events.append(("finish", phase_name))


def build_with(monitor):
    builder, network = parse(small_cnn())
    config = builder.create_builder_config()
    config.progress_monitor = monitor
    assert config.progress_monitor is monitor
    return builder.build_serialized_network(network, config)


def test_phases_are_reported_in_order():
    rec = Recorder()
    assert len(build_with(rec)) > 0
    assert rec.events[0] == ("start", "Building engine", None, 5)
    assert rec.events[-1] == ("finish", "Building engine")
    starts = [e[1] for e in rec.events if e[0] == "start"]
    for phase in ("Optimizing graph", "Selecting kernels", "Planning memory", "Serializing engine"):
        assert phase in starts
    passes = [e for e in rec.events if e[0] == "start" and e[1] == "Optimizing graph"][0]
    assert passes[2] == "Building engine"
    assert sum(1 for e in rec.events if e[:2] == ("step", "Optimizing graph")) == passes[3]


def test_returning_false_cancels_the_build():
    rec = Recorder(cancel_phase="Optimizing graph")
    with pytest.raises(kiln.KilnError, match="build cancelled"):
        build_with(rec)
    assert rec.events[-1] == ("finish", "Building engine")


def test_base_class_does_nothing_and_none_clears():
    assert len(build_with(kiln.ProgressMonitor())) > 0
    builder, network = parse(small_cnn())
    config = builder.create_builder_config()
    config.progress_monitor = Recorder()
    config.progress_monitor = None
    assert config.progress_monitor is None
