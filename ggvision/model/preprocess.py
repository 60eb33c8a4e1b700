"""Frames -> model input tensor, and the per-frame geometry that maps model boxes back to the frame.

A frame is HxWx3 uint8 BGR (cameras) or HxW / HxWx1 single channel (thermal: uint16 raw counts or float32 °C).
Letterbox keeps the aspect ratio: the resized image sits at the top-left (YOLOX's own preproc, padding
bottom/right) or in the centre (Ultralytics), the rest filled with pad_value. Stretch resizes to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .manifest import InputSpec, ModelError

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8, "int8": np.int8,
              "float64": np.float64}


@dataclass(frozen=True)
class Geometry:
    """How one frame was placed into the model input: input = frame * scale + pad (per axis)."""

    frame_h: int
    frame_w: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """[N,4] x1,y1,x2,y2 in model-input pixels -> frame pixels, clipped to the frame."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.frame_w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.frame_h, out=out[:, 1::2])
        return out


def letterbox(img: np.ndarray, size: tuple[int, int], pad_value: float = 114, *,
              center: bool = False) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio into (h, w) and pad; returns (image, scale, (pad_x, pad_y)).

    center=False places the image at the top-left like YOLOX's preproc (pad_x = pad_y = 0);
    center=True splits the padding evenly like Ultralytics.
    """
    h, w = size
    ih, iw = img.shape[:2]
    r = min(h / ih, w / iw)
    nw, nh = max(1, min(w, int(iw * r))), max(1, min(h, int(ih * r)))  # int() truncates as YOLOX does
    resized = img if (nw, nh) == (iw, ih) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2 and img.ndim == 3:  # cv2 drops a trailing channel axis of 1
        resized = resized[:, :, None]
    if center:
        left, top = (w - nw) // 2, (h - nh) // 2
    else:
        left, top = 0, 0
    right, bottom = w - nw - left, h - nh - top
    if right or bottom or left or top:
        channels = 1 if resized.ndim == 2 else resized.shape[2]
        padded = cv2.copyMakeBorder(resized, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                    value=[float(pad_value)] * max(channels, 1))
        if padded.ndim == 2 and resized.ndim == 3:
            padded = padded[:, :, None]
    else:
        padded = resized
    return padded, r, (left, top)


def fit(img: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Resize one frame to the model input size as the spec says (letterbox or stretch)."""
    if img.ndim not in (2, 3):
        raise ModelError(f"frame of shape {img.shape}: expected HxW or HxWxC")
    ih, iw = img.shape[:2]
    if ih == 0 or iw == 0:
        raise ModelError(f"empty frame of shape {img.shape}")
    h, w = spec.hw
    if spec.resize == "stretch":
        out = img if (ih, iw) == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        if out.ndim == 2 and img.ndim == 3:
            out = out[:, :, None]
        return out, Geometry(ih, iw, w / iw, h / ih, 0.0, 0.0)
    out, r, (px, py) = letterbox(img, (h, w), spec.pad_value, center=spec.align == "center")
    return out, Geometry(ih, iw, r, r, float(px), float(py))


def _channels(img: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HxWxC in the model's colour order (BGR frames; single-channel frames replicated or kept)."""
    if img.ndim == 2:
        img = img[:, :, None]
    c = img.shape[2]
    if spec.color == "GRAY":
        if c == 1:
            return img
        if c == 3:
            return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
    elif c == 3:
        return img[:, :, ::-1] if spec.color == "RGB" else img
    elif c == 1:
        return np.repeat(img, 3, axis=2)
    raise ModelError(f"frame with {c} channels cannot feed a {spec.color} input")


def to_tensor(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Images already at the input size -> one batch tensor in the spec's layout, colour order and dtype,
    with (pixel * scale - mean) / std applied (skipped when it is the identity)."""
    h, w = spec.hw
    c = spec.channels
    dtype = _NP_DTYPES[spec.dtype]
    nchw = spec.layout == "NCHW"
    shape = (len(images), c, h, w) if nchw else (len(images), h, w, c)
    # Normalise in float32 then cast: exact for float32 models, and integer models get rounded values.
    work = np.float32 if dtype != np.float64 else np.float64
    batch = np.empty(shape, dtype=work)
    for i, img in enumerate(images):
        img = _channels(img, spec)
        if img.shape[:2] != (h, w):
            raise ModelError(f"image {i} is {img.shape[:2]}, the model input needs {(h, w)}")
        if nchw:
            batch[i] = img.transpose(2, 0, 1)
        else:
            batch[i] = img
    if spec.scale != 1.0:
        batch *= spec.scale
    mean = np.asarray(spec.mean, dtype=work)
    std = np.asarray(spec.std, dtype=work)
    bshape = (1, c, 1, 1) if nchw else (1, 1, 1, c)
    if mean.any():
        batch -= mean.reshape(bshape)
    if (std != 1).any():
        batch /= std.reshape(bshape)
    if dtype == work:
        return batch
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(batch), info.min, info.max).astype(dtype)
    return batch.astype(dtype)


def prepare(frames: list[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[Geometry]]:
    """Frames of any size -> (batch tensor, per-frame geometry)."""
    fitted, geoms = [], []
    for f in frames:
        img, g = fit(f, spec)
        fitted.append(img)
        geoms.append(g)
    return to_tensor(fitted, spec), geoms


def features_tensor(rows: list, spec: InputSpec) -> np.ndarray:
    """Tabular rows (1-D vectors, or mappings by feature name when the spec names its features) -> [N, F]."""
    n_feat = spec.shape[1]
    out = np.empty((len(rows), n_feat), dtype=_NP_DTYPES[spec.dtype])
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            if spec.features is None:
                raise ModelError(f"row {i}: a mapping needs input.features in the manifest to order it")
            missing = [f for f in spec.features if f not in row]
            if missing:
                raise ModelError(f"row {i}: missing features {missing}")
            row = [row[f] for f in spec.features]
        arr = np.asarray(row, dtype=np.float64).reshape(-1)
        if arr.shape[0] != n_feat:
            raise ModelError(f"row {i}: {arr.shape[0]} features, the model needs {n_feat}")
        out[i] = arr
    return out
