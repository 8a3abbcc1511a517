"""The Python API and the C++ `kiln run` command give the same outputs."""

from __future__ import annotations

import subprocess

import numpy as np
import onnx

import kiln
from conftest import build
from example_models import small_cnn, tiny_resnet


def kiln_run(cli, model_path, inputs: dict, out_dir, extra=()):
    args = [cli, "run", str(model_path), "--output-dir", str(out_dir), *extra]
    for name, path in inputs.items():
        args += ["--input", f"{name}={path}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return {p.stem: np.load(p) for p in out_dir.glob("*.npy")}


def test_same_engine_same_outputs(tmp_path, kiln_cli):
    serialized = build(small_cnn(seed=31))
    engine_path = tmp_path / "cnn.engine"
    engine_path.write_bytes(serialized)
    x = np.random.default_rng(31).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cli = kiln_run(kiln_cli, engine_path, {"images": tmp_path / "x.npy"}, tmp_path / "out")
    py = kiln.Runtime(kiln.Logger()).deserialize_file(str(engine_path)).create_execution_context().infer({"images": x})
    assert set(cli) == set(py) == {"scores", "features"}
    for name in py:
        assert cli[name].dtype == py[name].dtype and cli[name].shape == py[name].shape
        np.testing.assert_array_equal(cli[name], py[name])


def test_onnx_model_with_dynamic_batch(tmp_path, kiln_cli):
    model = tiny_resnet(image=16, seed=32)
    onnx.save(model, tmp_path / "resnet.onnx")
    x = np.random.default_rng(32).standard_normal((3, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    # The CLI builds its own engine for the input's shape; Python builds one with a profile.
    cli = kiln_run(kiln_cli, tmp_path / "resnet.onnx", {"input": tmp_path / "x.npy"}, tmp_path / "out")
    serialized = build(model, profiles=[{"input": ((1, 3, 16, 16), (3, 3, 16, 16), (4, 3, 16, 16))}])
    py = kiln.Runtime(kiln.Logger()).deserialize_cuda_engine(serialized).create_execution_context().infer(
        {"input": x})
    assert cli["output"].shape == py["output"].shape == (3, 10)
    np.testing.assert_allclose(cli["output"], py["output"], atol=1e-6, rtol=1e-6)
