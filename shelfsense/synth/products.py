"""The products on the synthetic shelf: drawn tiny products, or photos from a folder of labelled images.

A sprite is a slot-sized picture with its alpha: what stands in the slot over the empty shelf.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shelfsense.footage.format import IMAGE_TYPES
from shelfsense.tools.dataset import labelled_images

__all__ = ["TINY_PRODUCTS", "Sprite", "Sprites", "find_product_photos"]

TINY_PRODUCTS: dict[str, tuple[str, tuple[int, int, int], str]] = {
    # name: (shape, BGR body colour, label)
    "red-carton": ("carton", (45, 45, 200), "MILK"),
    "blue-carton": ("carton", (190, 95, 30), "MILK"),  # differs from red-carton only by colour
    "green-can": ("can", (60, 150, 40), "SODA"),
    "yellow-box": ("box", (40, 200, 235), "CORN"),
    "white-bottle": ("bottle", (235, 235, 230), "H2O"),
    "orange-bag": ("bag", (30, 130, 245), "CHIPS"),
    "purple-jar": ("jar", (130, 40, 110), "JAM"),
}
WHITE = (245, 245, 245)


@dataclass
class Sprite:
    image: np.ndarray  # BGR, slot-sized
    alpha: np.ndarray  # float32 0..1, slot-sized


@dataclass
class _Canvas:
    """A w x h slot being drawn on: the picture, its mask, and the product's width and left edge."""

    img: np.ndarray
    mask: np.ndarray
    w: int
    h: int
    colour: tuple[int, int, int]
    pw: int
    x0: int

    @property
    def dark(self) -> tuple[int, ...]:
        return tuple(int(c * 0.6) for c in self.colour)

    def body(self, points: list[list[int]]) -> None:
        pts = np.array(points, np.int32)
        cv2.fillPoly(self.img, [pts], self.colour, cv2.LINE_AA)
        cv2.fillPoly(self.mask, [pts], 255, cv2.LINE_AA)

    def block(self, ph: int, top: int = 0) -> int:
        """A rectangular body `ph` high standing on the slot's bottom (from `top` below its top); returns y0."""
        y0 = self.h - ph
        x0, pw, h = self.x0, self.pw, self.h
        self.body([[x0, y0 + top], [x0 + pw, y0 + top], [x0 + pw, h - 1], [x0, h - 1]])
        return y0


# Each shape draws its body and decoration and returns the baseline of its label text.


def _carton(c: _Canvas) -> int:
    x0, pw, h = c.x0, c.pw, c.h
    ph = round(h * 0.92)
    y0 = h - ph
    roof = round(ph * 0.12)
    c.body([[x0, y0 + roof], [x0 + pw // 2, y0], [x0 + pw, y0 + roof], [x0 + pw, h - 1], [x0, h - 1]])
    cv2.rectangle(c.img, (x0, y0 + roof + ph // 5), (x0 + pw, y0 + roof + ph // 5 + ph // 10), WHITE, -1)
    cv2.rectangle(c.img, (x0, h - ph // 6), (x0 + pw, h - ph // 6 + ph // 24), c.dark, -1)
    return y0 + roof + ph // 2


def _can(c: _Canvas) -> int:
    x0, pw, h = c.x0, c.pw, c.h
    ph = round(h * 0.62)
    y0 = c.block(ph)
    for yb in (y0, h - ph // 10):
        cv2.rectangle(c.img, (x0, yb), (x0 + pw, yb + ph // 10), (200, 200, 205), -1)
    cv2.line(c.img, (x0 + pw // 5, y0 + ph // 8), (x0 + pw // 5, h - ph // 8), WHITE, max(1, pw // 16))
    return y0 + ph // 2 + ph // 10


def _box(c: _Canvas) -> int:
    x0, pw = c.x0, c.pw
    ph = round(c.h * 0.96)
    y0 = c.block(ph)
    cv2.ellipse(c.img, (x0 + pw // 2, y0 + ph // 3), (pw // 3, ph // 7), 0, 0, 360, (30, 70, 120), -1, cv2.LINE_AA)
    for k in range(3):
        yy = y0 + ph // 2 + k * ph // 9
        cv2.line(c.img, (x0, yy), (x0 + pw, yy + ph // 20), c.dark, max(1, ph // 40))
    return y0 + ph - ph // 8


def _bottle(c: _Canvas) -> int:
    x0, pw, h = c.x0, c.pw, c.h
    ph = round(h * 0.9)
    y0 = h - ph
    neck = pw // 4
    cx = x0 + pw // 2
    shoulder, waist = y0 + ph // 5, y0 + ph // 3
    c.body(
        [
            [cx - neck // 2, y0],
            [cx + neck // 2, y0],
            [cx + neck // 2, shoulder],
            [x0 + pw, waist],
            [x0 + pw, h - 1],
            [x0, h - 1],
            [x0, waist],
            [cx - neck // 2, shoulder],
        ]
    )
    cv2.rectangle(c.img, (cx - neck // 2, y0), (cx + neck // 2, y0 + ph // 14), (40, 40, 190), -1)
    cv2.rectangle(c.img, (x0, y0 + ph // 2), (x0 + pw, y0 + ph // 2 + ph // 4), (50, 50, 200), -1)
    return y0 + ph // 2 + ph // 6


def _bag(c: _Canvas) -> int:
    x0, pw, h = c.x0, c.pw, c.h
    ph = round(h * 0.8)
    y0 = h - ph
    c.body(
        [
            [x0 + pw // 10, y0],
            [x0 + pw - pw // 10, y0],
            [x0 + pw, y0 + ph // 8],
            [x0 + pw, h - 1],
            [x0, h - 1],
            [x0, y0 + ph // 8],
        ]
    )
    cv2.circle(c.img, (x0 + pw // 2, y0 + ph // 3), pw // 4, (40, 200, 240), -1, cv2.LINE_AA)
    return y0 + ph - ph // 5


def _jar(c: _Canvas) -> int:
    x0, pw = c.x0, c.pw
    ph = round(c.h * 0.55)
    y0 = c.block(ph, top=ph // 6)
    lid = ((x0 + pw // 12, y0), (x0 + pw - pw // 12, y0 + ph // 6))
    cv2.rectangle(c.img, *lid, (40, 170, 200), -1)
    cv2.rectangle(c.mask, *lid, 255, -1)
    cv2.rectangle(c.img, (x0, y0 + ph // 3), (x0 + pw, y0 + ph - ph // 6), WHITE, -1)
    return y0 + ph // 2 + ph // 10


SHAPES: dict[str, Callable[[_Canvas], int]] = {
    "carton": _carton,
    "can": _can,
    "box": _box,
    "bottle": _bottle,
    "bag": _bag,
    "jar": _jar,
}


def tiny_sprite(name: str, w: int, h: int) -> Sprite:
    """A drawn product standing at the bottom of a w x h slot."""
    shape, colour, label = TINY_PRODUCTS[name]
    pw = round(w * 0.8)
    c = _Canvas(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8), w, h, colour, pw, (w - pw) // 2)
    text_y = SHAPES[shape](c)
    scale = max(0.25, pw / 110)
    (tw, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_DUPLEX, scale, 1)
    ink = (20, 20, 20) if sum(colour) > 450 or shape in ("jar", "bottle") else WHITE
    origin = (c.x0 + max(0, (pw - tw) // 2), text_y)
    cv2.putText(c.img, label, origin, cv2.FONT_HERSHEY_DUPLEX, scale, ink, max(1, round(scale)), cv2.LINE_AA)
    # A slight shading from left to right gives the drawing some volume.
    shade = np.linspace(1.05, 0.85, w, dtype=np.float32)[None, :, None]
    img = np.clip(c.img.astype(np.float32) * shade, 0, 255).astype(np.uint8)
    return Sprite(img, c.mask.astype(np.float32) / 255.0)


def photo_sprite(photo: np.ndarray, w: int, h: int) -> Sprite:
    """A product photo scaled to fit the slot, standing on the shelf board, centred."""
    ph0, pw0 = photo.shape[:2]
    scale = min(0.92 * w / pw0, 0.96 * h / ph0)
    pw, ph = max(1, round(pw0 * scale)), max(1, round(ph0 * scale))
    small = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
    img = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.float32)
    x0, y0 = (w - pw) // 2, h - ph
    img[y0:, x0 : x0 + pw] = small
    alpha[y0:, x0 : x0 + pw] = 1.0
    return Sprite(img, alpha)


def find_product_photos(products: Path) -> dict[str, list[Path]]:
    """Images under `products` (recursively) grouped by class = name of the folder holding them."""
    if not products.is_dir():
        raise FileNotFoundError(f"product photo folder {products} does not exist")
    by_class: dict[str, list[Path]] = {}
    for path, label in labelled_images(products, frozenset(IMAGE_TYPES)):
        by_class.setdefault(label, []).append(path)
    if not by_class:
        raise ValueError(f"no .jpg/.jpeg/.png product photos under {products}")
    return by_class


def photo_sprites(products: Path, count: int, w: int, h: int, rng: np.random.Generator) -> dict[str, Sprite]:
    """Sprites of `count` classes drawn at random, one decodable photo each (also drawn at random)."""
    by_class = find_product_photos(products)
    names = sorted(by_class)
    chosen = [names[i] for i in rng.permutation(len(names))]
    sprites: dict[str, Sprite] = {}
    for name in chosen:
        if len(sprites) == count:
            break
        photos = by_class[name]
        for i in rng.permutation(len(photos)):
            image = cv2.imread(str(photos[i]), cv2.IMREAD_COLOR)
            if image is not None:
                sprites[name] = photo_sprite(image, w, h)
                break
    if not sprites:
        raise ValueError(f"none of the product photos under {products} could be decoded")
    return sprites


class Sprites:
    """Each product's sprite per slot size, made once: rounding can make slots differ by a pixel."""

    def __init__(self, photos: dict[str, Sprite] | None = None) -> None:
        self.photos = photos  # None: the drawn tiny products
        self._made: dict[tuple[str, int, int], Sprite] = {}

    @property
    def classes(self) -> list[str]:
        return list(TINY_PRODUCTS if self.photos is None else self.photos)

    def get(self, name: str, w: int, h: int) -> Sprite:
        key = (name, w, h)
        if key not in self._made:
            if self.photos is None:
                self._made[key] = tiny_sprite(name, w, h)
            elif self.photos[name].image.shape[:2] == (h, w):
                self._made[key] = self.photos[name]
            else:
                s = self.photos[name]
                self._made[key] = Sprite(
                    cv2.resize(s.image, (w, h), interpolation=cv2.INTER_AREA),
                    cv2.resize(s.alpha, (w, h), interpolation=cv2.INTER_AREA),
                )
        return self._made[key]
