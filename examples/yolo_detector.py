#!/usr/bin/env python3
"""A YOLO-style detector end to end with numpy only (seeds 002 and 003).

    python examples/yolo_detector.py                         # generated model and scene
    python examples/yolo_detector.py --model yolov8n.onnx --image bus.png --size 640 \\
        --classes 80 --out detections.png
    python examples/yolo_detector.py --device cpu    # default: cuda if kiln finds a GPU

Letterbox preprocessing (resize keeping the aspect ratio, pad with 114), an engine
built from ONNX and saved to a file, inference through the binding-address flow of
ultralytics' TensorRT backend (execute_v2; device buffers on the GPU), YOLOv8 box decoding ([1, 4 + classes,
anchors] with cx, cy, w, h), class-aware NMS, and boxes drawn into a PNG written
with zlib. Without --model it uses a small generated detector whose hand-set
weights find red, green and blue squares, and a generated scene holding some.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import zlib
from collections import OrderedDict, namedtuple

import numpy as np

import kiln

PALETTE = np.array([[255, 56, 56], [56, 255, 56], [56, 120, 255], [255, 157, 151], [255, 178, 29],
                    [207, 210, 49], [72, 249, 10], [146, 204, 23], [61, 219, 134], [26, 147, 52]], dtype=np.uint8)


# ------------------------------------------------------------------ images

def resize_bilinear(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """HWC uint8 resize with half-pixel centres (as cv2.INTER_LINEAR)."""
    h, w = img.shape[:2]
    ys = np.clip((np.arange(new_h) + 0.5) * h / new_h - 0.5, 0, h - 1)
    xs = np.clip((np.arange(new_w) + 0.5) * w / new_w - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    wy = (ys - y0)[:, None, None]
    wx = (xs - x0)[None, :, None]
    f = img.astype(np.float32)
    top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
    bottom = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
    return np.clip(np.rint(top * (1 - wy) + bottom * wy), 0, 255).astype(np.uint8)


def letterbox(img: np.ndarray, size: int, color: int = 114) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resizes the long side to `size` and pads the short one equally on both sides."""
    h, w = img.shape[:2]
    ratio = min(size / h, size / w)
    new_w, new_h = int(round(w * ratio)), int(round(h * ratio))
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    out = np.full((size, size, 3), color, dtype=np.uint8)
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    out[top:top + new_h, left:left + new_w] = resize_bilinear(img, new_w, new_h)
    return out, ratio, (left, top)


def to_blob(img: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> NCHW float32 in [0, 1]."""
    return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def write_png(path: str, rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG using only zlib."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + np.ascontiguousarray(rgb[y]).tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def read_image(path: str) -> np.ndarray:
    """HWC uint8 RGB from a binary PPM, or anything Pillow reads when it is installed."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == b"P6":
        with open(path, "rb") as f:
            tokens, data = [], f.read()
            pos = 0
            while len(tokens) < 4:
                while data[pos:pos + 1].isspace():
                    pos += 1
                if data[pos:pos + 1] == b"#":
                    pos = data.index(b"\n", pos)
                    continue
                end = pos
                while not data[end:end + 1].isspace():
                    end += 1
                tokens.append(data[pos:end])
                pos = end
            w, h = int(tokens[1]), int(tokens[2])
            return np.frombuffer(data[pos + 1:pos + 1 + w * h * 3], dtype=np.uint8).reshape(h, w, 3).copy()
    from PIL import Image  # optional dependency for other formats

    return np.asarray(Image.open(path).convert("RGB"))


def make_scene(width: int = 128, height: int = 96, seed: int = 0):
    """A grey noisy image with a red, a green and a blue square; returns it and the
    ground truth [(class_id, x1, y1, x2, y2)]."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(114, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    truth = [(0, 6, 8, 50, 52), (1, 56, 48, 100, 92), (2, 82, 2, 126, 46)]
    for cls, x1, y1, x2, y2 in truth:
        color = np.zeros(3, dtype=np.uint8)
        color[cls] = 240
        img[y1:y2, x1:x2] = color
    return img, truth


def draw_boxes(img: np.ndarray, detections: np.ndarray, thickness: int = 2) -> np.ndarray:
    out = img.copy()
    h, w = out.shape[:2]
    for x1, y1, x2, y2, _score, cls in detections:
        color = PALETTE[int(cls) % len(PALETTE)]
        x1, y1 = int(np.clip(x1, 0, w - 1)), int(np.clip(y1, 0, h - 1))
        x2, y2 = int(np.clip(x2, 0, w - 1)), int(np.clip(y2, 0, h - 1))
        out[y1:y1 + thickness, x1:x2 + 1] = color
        out[max(y2 - thickness + 1, 0):y2 + 1, x1:x2 + 1] = color
        out[y1:y2 + 1, x1:x1 + thickness] = color
        out[y1:y2 + 1, max(x2 - thickness + 1, 0):x2 + 1] = color
    return out


# ------------------------------------------------------------------ decoding and NMS

def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy class-aware NMS; indices of the kept boxes, best first."""
    keep = []
    for cls in np.unique(classes):
        idx = np.where(classes == cls)[0]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        while idx.size:
            best = idx[0]
            keep.append(int(best))
            idx = idx[1:][iou(boxes[best], boxes[idx[1:]]) <= iou_threshold]
    return sorted(keep, key=lambda i: -scores[i])


def decode(output: np.ndarray, ratio: float, pad: tuple[int, int], image_shape, conf: float = 0.25,
           iou_threshold: float = 0.45, max_det: int = 300) -> np.ndarray:
    """YOLOv8 head [1, 4 + nc, anchors] -> rows (x1, y1, x2, y2, score, class) in
    original image pixels."""
    pred = output[0].T  # anchors x (4 + nc)
    scores_all = pred[:, 4:]
    classes = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(pred)), classes]
    mask = scores > conf
    pred, scores, classes = pred[mask], scores[mask], classes[mask]
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = nms(boxes, scores, classes, iou_threshold)[:max_det]
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - pad[0]) / ratio
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - pad[1]) / ratio
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image_shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image_shape[0])
    return np.concatenate([boxes, scores[:, None], classes[:, None].astype(np.float32)], axis=1)


# ------------------------------------------------------------------ the engine

def default_device() -> str:
    return "cuda" if kiln.cuda_device_count() > 0 else "cpu"


def build_engine_file(onnx_path: str, engine_path: str, logger: kiln.Logger, half: bool = False,
                      device: str = "cpu") -> None:
    builder = kiln.Builder(logger)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(kiln.MemoryPoolType.WORKSPACE, 1 << 30)
    if device == "cuda":
        config.set_device(kiln.DeviceType.CUDA)
    network = builder.create_network(1 << int(kiln.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = kiln.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        raise RuntimeError(f"failed to load ONNX file: {onnx_path}: " +
                           "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
    if builder.platform_has_fast_fp16 and half:
        config.set_flag(kiln.BuilderFlag.FP16)
    with builder.build_serialized_network(network, config) as engine, open(engine_path, "wb") as t:
        t.write(engine)


Binding = namedtuple("Binding", ("name", "dtype", "shape", "data", "ptr"))


class EngineBackend:
    """The binding table of ultralytics' TensorRT 10 backend: host arrays for a CPU
    engine, device arrays (kiln.DeviceArray; ultralytics uses torch CUDA tensors) for a
    CUDA one."""

    def __init__(self, engine_path: str, logger: kiln.Logger):
        with open(engine_path, "rb") as f, kiln.Runtime(logger) as runtime:
            self.model = runtime.deserialize_cuda_engine(f.read())
        self.context = self.model.create_execution_context()
        self.on_gpu = self.model.device == "cuda"
        self.bindings = OrderedDict()
        self.output_names = []
        for i in range(self.model.num_io_tensors):
            name = self.model.get_tensor_name(i)
            dtype = self.model.get_tensor_dtype(name)
            if self.model.get_tensor_mode(name) == kiln.TensorIOMode.INPUT:
                if -1 in self.model.get_tensor_shape(name):  # dynamic: use the profile's max
                    self.context.set_input_shape(name, self.model.get_tensor_profile_shape(name, 0)[2])
            else:
                self.output_names.append(name)
            shape = tuple(self.context.get_tensor_shape(name))
            if self.on_gpu:
                data = kiln.DeviceArray.empty(shape, dtype)
                self.bindings[name] = Binding(name, kiln.nptype(dtype), shape, data, data.ptr)
            else:
                data = np.empty(shape, dtype=kiln.nptype(dtype))
                self.bindings[name] = Binding(name, kiln.nptype(dtype), shape, data, data.ctypes.data)
        self.binding_addrs = OrderedDict((n, d.ptr) for n, d in self.bindings.items())
        self.input_name = next(n for n in self.bindings if n not in self.output_names)

    def __call__(self, im: np.ndarray) -> list[np.ndarray]:
        s = self.bindings[self.input_name].shape
        assert im.shape == s, f"input size {im.shape} not equal to model size {s}"
        im = np.ascontiguousarray(im, dtype=self.bindings[self.input_name].dtype)
        if self.on_gpu:
            self.bindings[self.input_name].data.copy_from_host(im)  # upload into the bound buffer
        else:
            self.binding_addrs[self.input_name] = im.ctypes.data
        self.context.execute_v2(list(self.binding_addrs.values()))  # synchronous
        outputs = [self.bindings[x].data for x in sorted(self.output_names)]
        return [o.copy_to_host() for o in outputs] if self.on_gpu else outputs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="YOLOv8-style ONNX model (default: a generated colour detector)")
    ap.add_argument("--image", help="image file: binary PPM, or any format Pillow reads (default: generated)")
    ap.add_argument("--size", type=int, default=64, help="model input size")
    ap.add_argument("--conf", type=float, default=0.5)
    ap.add_argument("--iou", type=float, default=0.25)
    ap.add_argument("--out", default="detections.png", help="PNG with the boxes drawn")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=default_device(),
                    help="where the engine runs (default: cuda when kiln finds a GPU)")
    args = ap.parse_args(argv)

    logger = kiln.Logger(kiln.Logger.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from example_models import DETECTOR_CLASSES, save, tiny_detector

            model = save(tiny_detector(size=args.size), os.path.join(tmp, "detector.onnx"))
            names = DETECTOR_CLASSES
        else:
            names = None
        engine_path = os.path.join(tmp, "detector.engine")
        build_engine_file(model, engine_path, logger, device=args.device)
        backend = EngineBackend(engine_path, logger)

        if args.image:
            image, truth = read_image(args.image), None
        else:
            image, truth = make_scene()
        boxed, ratio, pad = letterbox(image, args.size)
        (output,) = backend(to_blob(boxed))
        detections = decode(output, ratio, pad, image.shape, conf=args.conf, iou_threshold=args.iou)

    for x1, y1, x2, y2, score, cls in detections:
        label = names[int(cls)] if names and int(cls) < len(names) else str(int(cls))
        print(f"{label:>6} {score:.2f}  box ({x1:.0f}, {y1:.0f}) - ({x2:.0f}, {y2:.0f})")
    write_png(args.out, draw_boxes(image, detections))
    print(f"{len(detections)} detections drawn into {args.out}")
    if truth is not None:
        for cls, x1, y1, x2, y2 in truth:
            cx = (detections[:, 0] + detections[:, 2]) / 2
            cy = (detections[:, 1] + detections[:, 3]) / 2
            hit = (detections[:, 5] == cls) & (cx >= x1) & (cx <= x2) & (cy >= y1) & (cy <= y2)
            if not hit.any():
                print(f"missed the {names[cls]} square at ({x1}, {y1}) - ({x2}, {y2})", file=sys.stderr)
                return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
