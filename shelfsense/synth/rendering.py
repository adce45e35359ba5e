"""Drawing the synthetic camera's frames: the stocked shelf, arms over it, and the camera's own imperfections
(a pixel or two of shake, a slow exposure drift, sensor noise, JPEG artefacts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from shelfsense.footage.jpeg import encode_jpeg
from shelfsense.synth.products import Sprites
from shelfsense.synth.simulation import Arm
from shelfsense.types import Box

__all__ = ["Camera", "Scene", "draw_arm"]


class Scene:
    """The shelf as it stands, without arms: the empty shelf with each slot's product painted over it."""

    def __init__(self, background: np.ndarray, slots: Sequence[Box], sprites: Sprites) -> None:
        self.background = background
        self.slots = slots
        self.sprites = sprites
        self.image = background.copy()

    def paint(self, i: int, name: str | None) -> None:
        x, y, bw, bh = self.slots[i]
        region = self.background[y : y + bh, x : x + bw].astype(np.float32)
        if name is not None:
            s = self.sprites.get(name, bw, bh)
            a = s.alpha[:, :, None]
            region = region * (1 - a) + s.image.astype(np.float32) * a
        self.image[y : y + bh, x : x + bw] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

    def with_arms(self, arms: Sequence[Arm], f: int, col_w: float) -> tuple[np.ndarray, np.ndarray]:
        """Frame `f` of the scene with `arms` over it, and the fraction of each slot they hide."""
        frame = self.image.copy()
        cover = np.zeros(len(self.slots), np.float32)
        if not arms:
            return frame, cover
        h, w = frame.shape[:2]
        layer = np.zeros_like(frame)
        mask = np.zeros((h, w), np.uint8)
        for a in arms:
            x, y, bw, bh = self.slots[a.target]
            draw_arm(layer, mask, a, a.reach(f), (x + bw / 2, y + bh * 0.6), col_w)
        for i, (x, y, bw, bh) in enumerate(self.slots):
            cover[i] = np.count_nonzero(mask[y : y + bh, x : x + bw] > 127) / np.float32(bw * bh)
        # Blend only where the arm is: soft edges stand in for motion blur.
        bx, by, bw, bh = cv2.boundingRect(mask)
        if bw and bh:
            x0, y0 = max(0, bx - 3), max(0, by - 3)
            x1, y1 = min(w, bx + bw + 3), min(h, by + bh + 3)
            soft = cv2.GaussianBlur(mask[y0:y1, x0:x1], (5, 5), 0).astype(np.float32)[:, :, None]
            soft /= 255.0
            roi = frame[y0:y1, x0:x1].astype(np.float32)
            frame[y0:y1, x0:x1] = (roi * (1 - soft) + layer[y0:y1, x0:x1] * soft + 0.5).astype(np.uint8)
        return frame, cover


def draw_arm(
    layer: np.ndarray, mask: np.ndarray, arm: Arm, reach: float, target: tuple[float, float], col_w: float
) -> None:
    ex, ey = arm.entry
    tx, ty = target
    px, py = ex + reach * (tx - ex), ey + reach * (ty - ey)
    elbow = (ex + 0.55 * (px - ex), ey + 0.55 * (py - ey))
    sleeve_w = max(3, round(0.42 * col_w))
    fore_w = max(2, round(0.30 * col_w))
    pts = [(round(ex), round(ey)), (round(elbow[0]), round(elbow[1])), (round(px), round(py))]
    for m, colour in ((mask, 255), (layer, arm.skin)):
        cv2.line(m, pts[1], pts[2], colour, fore_w, cv2.LINE_AA)
        angle = math.degrees(math.atan2(py - ey, px - ex))
        cv2.ellipse(m, pts[2], (round(0.2 * col_w), round(0.15 * col_w)), angle, 0, 360, colour, -1, cv2.LINE_AA)
    for m, colour in ((mask, 255), (layer, arm.sleeve)):
        cv2.line(m, pts[0], pts[1], colour, sleeve_w, cv2.LINE_AA)


class Camera:
    """The camera's imperfections, drawn once from the generator, then applied frame by frame."""

    PAD = 16  # noise fields are this much larger than the frame, read at random offsets

    def __init__(
        self, size: tuple[int, int], frames: int, noise_sigma: float, shake_px: float, rng: np.random.Generator
    ) -> None:
        w, h = size
        self.size = size
        self.shake_px = shake_px
        self.rng = rng
        self.exposure_period = float(rng.uniform(40, 90))
        self.exposure_phase = float(rng.uniform(0, 2 * math.pi))
        self.jpeg_q = rng.integers(70, 91, size=frames)
        # Fresh gaussian noise for every frame costs more than the rest of the frame; a small bank of
        # fields read at random offsets looks the same to a hash and keeps 120 frames within seconds.
        pad = self.PAD
        self.noise_bank = [
            np.round(rng.standard_normal((h + pad, w + pad, 3), dtype=np.float32) * noise_sigma).astype(np.int16)
            for _ in range(4)
        ]

    def shoot(self, frame: np.ndarray, f: int, fps: float) -> bytes:
        """Frame `f` as the camera delivers it: shaken, exposed, noisy, JPEG-encoded."""
        rng, (w, h) = self.rng, self.size
        # Camera shake: the mount is usually at rest, sometimes off by a pixel or so.
        if self.shake_px > 0 and rng.random() < 0.3:
            angle = rng.uniform(0, 2 * math.pi)
            amount = rng.uniform(0.5, self.shake_px)
            dx, dy = amount * math.cos(angle), amount * math.sin(angle)
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            frame = cv2.warpAffine(frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + 0.08 * math.sin(2 * math.pi * (f / fps) / self.exposure_period + self.exposure_phase)
        bank = self.noise_bank[int(rng.integers(len(self.noise_bank)))]
        ox, oy = (int(v) for v in rng.integers(0, self.PAD, size=2))
        frame = cv2.convertScaleAbs(frame, alpha=gain)
        frame = cv2.add(frame, bank[oy : oy + h, ox : ox + w], dtype=cv2.CV_8U)
        return encode_jpeg(frame, int(self.jpeg_q[f]))
