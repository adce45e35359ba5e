"""Shelf-slot augmentation: a product photo made to look like a slot crop from a shelf camera.

Generic camera and shelf effects, with ranges taken from the issue's description of slot crops, not from any
footage generator: a random part of the photo, the facing off centre with a neighbour or shelf back around it,
downscaled to a 100-250 px crop (then upscaled to the model input, as the runtime does), exposure and white
balance drift, blur, partial occlusion by an arm, sensor noise and JPEG at quality 60-90.
"""

from __future__ import annotations

import cv2
import numpy as np

from .data import to_input

# Sleeve and skin tones (RGB) for the occluding arm: broad, not matched to any generator.
ARM_COLOURS = np.array(
    [[224, 172, 105], [198, 134, 66], [141, 85, 36], [255, 219, 172], [241, 194, 125], [90, 56, 37]]
    + [[30, 30, 30], [200, 200, 205], [40, 60, 140], [150, 30, 30], [40, 110, 60], [235, 235, 235]],
    np.float32,
)


def random_crop(img: np.ndarray, rng: np.random.Generator, min_area: float = 0.35) -> np.ndarray:
    """A random part of the photo: area fraction min_area..1, aspect ratio 0.6..1.6 (slots are rarely square)."""
    h, w = img.shape[:2]
    area = rng.uniform(min_area, 1.0)
    ratio = np.exp(rng.uniform(np.log(0.6), np.log(1.6)))
    cw = int(min(w, round(w * np.sqrt(area * ratio))))
    ch = int(min(h, round(h * np.sqrt(area / ratio))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img[y0 : y0 + ch, x0 : x0 + cw]


def off_centre(img: np.ndarray, rng: np.random.Generator, neighbour: np.ndarray) -> np.ndarray:
    """The facing shifted in a slot box up to 35 % larger; the rest shows a neighbour product or shelf back."""
    h, w = img.shape[:2]
    bw, bh = int(w * rng.uniform(1.0, 1.35)), int(h * rng.uniform(1.0, 1.35))
    if rng.random() < 0.5:
        canvas = cv2.resize(neighbour, (bw, bh), interpolation=cv2.INTER_AREA)
    else:
        base = rng.uniform(20, 235, 3).astype(np.float32)
        canvas = np.broadcast_to(base, (bh, bw, 3)) + rng.normal(0, 6, (bh, bw, 1))
        canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    x0, y0 = int(rng.integers(0, bw - w + 1)), int(rng.integers(0, bh - h + 1))
    canvas = canvas.copy()
    canvas[y0 : y0 + h, x0 : x0 + w] = img
    return canvas


def arm(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A shaded band from one edge (an arm reaching in), covering up to about a third of the crop."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    width = rng.uniform(0.2, 0.45) * min(w, h)
    side = int(rng.integers(0, 4))
    start = np.array([rng.uniform(0, w), h + width]) if side == 0 else np.array([-width, rng.uniform(0, h)])
    if side == 2:
        start = np.array([w + width, rng.uniform(0, h)])
    if side == 3:
        start = np.array([rng.uniform(0, w), -width])
    end = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
    mask = np.zeros((h, w), np.float32)
    cv2.line(mask, tuple(int(v) for v in start), tuple(int(v) for v in end), 1.0, max(2, int(width)))
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, width / 8))[..., None]
    colour = ARM_COLOURS[rng.integers(0, len(ARM_COLOURS))] * rng.uniform(0.8, 1.15)
    shade = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), w, dtype=np.float32)[None, :, None]
    out = out * (1 - mask) + np.clip(colour * shade, 0, 255) * mask
    return out.astype(np.uint8)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exposure drift, white balance, contrast and saturation; then blur and sensor noise."""
    x = img.astype(np.float32)
    x = x * rng.uniform(0.7, 1.3) * rng.uniform(0.92, 1.08, 3)
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.75, 1.2) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * rng.uniform(0.7, 1.25) + grey
    if rng.random() < 0.35:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.4))
    if rng.random() < 0.7:
        x = x + rng.normal(0, rng.uniform(1.0, 6.0), x.shape).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 91))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1] if ok else img


def shelf_view(img: np.ndarray, rng: np.random.Generator, neighbour: np.ndarray, size: int) -> np.ndarray:
    """One slot-like view of an RGB photo, as the model input (size x size uint8 RGB)."""
    x = random_crop(img, rng)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < 0.5:
        x = off_centre(np.ascontiguousarray(x), rng, neighbour)
    h, w = x.shape[:2]
    side = rng.uniform(100, 250)  # the crop's longer side in camera pixels
    f = side / max(h, w)
    x = cv2.resize(x, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    x = photometric(x, rng)
    if rng.random() < 0.3:
        x = arm(x, rng)
    x = jpeg(np.ascontiguousarray(x), rng)
    return to_input(x, size)
