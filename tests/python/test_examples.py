"""Every script in examples/ runs on the CPU, and on the GPU where kiln finds one,
and checks its own result; the YOLO helpers (letterbox, NMS, decoding, PNG) are
checked directly."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from conftest import EXAMPLES

import kiln
import yolo_detector as yolo

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    kiln.cuda_device_count() == 0, reason=f"no CUDA device: {kiln.cuda_unavailable_reason()}"))]


def run_example(name, *args, cwd=None):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("OK"), done.stdout
    return done.stdout


@pytest.mark.parametrize("device", DEVICES)
def test_onnx_to_engine(tmp_path, device):
    out = run_example("onnx_to_engine.py", "--engine", str(tmp_path / "model.engine"), "--device", device)
    assert (tmp_path / "model.engine").stat().st_size > 0
    assert "max |kiln - onnxruntime|" in out
    assert f"engine runs on {device}" in out


@pytest.mark.parametrize("device", DEVICES)
def test_dynamic_batch_resnet(device):
    out = run_example("dynamic_batch_resnet.py", "--image-size", "16", "--device", device)
    for n in (1, 3, 8, 6):
        assert f"batch {n}: output ({n}, 10)" in out
    assert "batch 9 is refused" in out
    assert f"engine runs on {device}" in out


@pytest.mark.parametrize("device", DEVICES)
def test_network_from_scratch(tmp_path, device):
    import network_from_scratch as lenet

    weights = lenet.random_weights(seed=3)
    np.savez(tmp_path / "w.npz", **weights)
    out = run_example("network_from_scratch.py", "--weights", str(tmp_path / "w.npz"), "--device", device)
    assert "prediction:" in out
    assert f"engine runs on {device}" in out


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * 3)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:].reshape(height, width, 3)


@pytest.mark.parametrize("device", DEVICES)
def test_yolo_detector_draws_the_objects(tmp_path, device):
    out_png = tmp_path / "det.png"
    out = run_example("yolo_detector.py", "--out", str(out_png), "--device", device)
    assert "3 detections" in out
    image = read_png(out_png)
    scene, truth = yolo.make_scene()
    assert image.shape == scene.shape
    changed = (image != scene).any(axis=2)
    assert changed.sum() > 100  # boxes were drawn
    for _cls, x1, y1, x2, y2 in truth:  # ... around each object
        assert changed[max(y1 - 12, 0):y2 + 12, max(x1 - 12, 0):x2 + 12].any()


def test_letterbox_keeps_aspect_ratio_and_centres():
    img = np.zeros((60, 120, 3), np.uint8)
    boxed, ratio, (left, top) = yolo.letterbox(img, 64)
    assert boxed.shape == (64, 64, 3) and ratio == pytest.approx(64 / 120)
    assert left == 0 and top == 16
    assert (boxed[:16] == 114).all() and (boxed[48:] == 114).all() and (boxed[16:48] == 0).all()


def test_resize_bilinear_matches_a_direct_formula():
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    assert (yolo.resize_bilinear(img, 6, 4) == img).all()
    half = yolo.resize_bilinear(img, 3, 2)
    # Downscaling by two with half-pixel centres averages each 2x2 block.
    expected = img.reshape(2, 2, 3, 2, 3).astype(float).mean(axis=(1, 3))
    np.testing.assert_allclose(half, np.rint(expected), atol=1)


def test_nms_is_class_aware_and_greedy():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert yolo.nms(boxes, scores, classes, 0.5) == [0, 2, 3]
    assert yolo.nms(boxes, scores, classes, 0.7) == [0, 1, 2, 3]


def test_decode_maps_back_to_the_original_image():
    # One anchor at the letterboxed centre (32, 32), 16 wide, class 1.
    out = np.zeros((1, 6, 2), np.float32)
    out[0, :, 0] = [32, 32, 16, 16, 0.1, 0.9]
    out[0, :, 1] = [5, 5, 4, 4, 0.2, 0.1]  # below the threshold
    det = yolo.decode(out, ratio=0.5, pad=(0, 16), image_shape=(64, 128, 3), conf=0.5)
    assert det.shape == (1, 6)
    np.testing.assert_allclose(det[0], [48, 16, 80, 48, 0.9, 1], rtol=1e-6)
