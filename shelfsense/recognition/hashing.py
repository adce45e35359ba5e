"""Perceptual key of a shelf-slot crop: a 64-bit imagehash-compatible hash plus a coarse colour signature.

The hash finds "the same picture" under JPEG, sensor noise, small brightness changes and 1-2 px shifts, but
it is computed on luminance only, so the same carton printed in red and in blue hashes alike. The colour
signature (mean CIE Lab per cell of a coarse grid) separates those. The default tolerances were chosen by
``bench/measure_distance.py``; the figures and the reasoning are in ``docs/distance.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import ClassVar, NamedTuple

import cv2
import imagehash
import numpy as np
import scipy.fftpack
from PIL import Image

from shelfsense.config import HASH_ALGORITHMS
from shelfsense.recognition.lanczos import lanczos_resize_values

# Measured in docs/distance.md (bench/measure_distance.py). The radius covers every perturbed copy seen (max 8,
# P99 4) while no pair of different products hashed within it passed the colour check; the cache's
# max_distance default should be this value.
DEFAULT_MAX_DISTANCE = 8
# Perturbed copies reached at most 6.9; hue-rotated copies of coloured photos start far above.
DEFAULT_COLOUR_TOLERANCE = 10
# The colour signature is the mean Lab colour of each cell of a GRID x GRID partition of the crop.
COLOUR_GRID = 3
# Brightness moves L much more than a*/b*; a half weight keeps +-10 % exposure changes inside the tolerance
# while a black and a white carton of the same design still differ.
L_WEIGHT = 0.5

# A crop whose 32x32 grey thumbnail varies less than this (standard deviation, grey levels) has no picture for
# a perceptual hash to describe: its bits would be set by sensor noise alone, so an empty shelf back would miss
# on every frame. Such crops get FLAT_BITS and are told apart by their colour signature only. Measured
# (docs/distance.md): empty synthetic shelf backs 4.0-5.3; grocery photos and their quadrant crops >= 12.3.
FLAT_STD = 8.0
# Colour-check answers a Hasher remembers (Hasher.colour_matches) before it starts over: ~150 bytes each.
MATCH_MEMO = 65_536
# Far from every real pHash: a median threshold sets about half of the 64 bits, so no real key is within reach.
FLAT_BITS = 0


class PerceptualKey(NamedTuple):
    """A slot's key. A named tuple, not a frozen dataclass: keys are hashed and built on every slot of every frame
    (memo tables, coalescing, the key store), and a tuple's hash and construction are C code."""

    bits: int  # 64-bit hash; bit order of int(str(imagehash_obj), 16), i.e. the first hash cell is the MSB
    colour: bytes  # COLOUR_GRID**2 cells x (L, a, b) as OpenCV 8-bit Lab


def _check_crop(crop_bgr: np.ndarray) -> np.ndarray:
    """The crop itself, checked. Not copied: OpenCV and numpy read a slot's view into the frame (rows apart, each
    row contiguous) as it is, with the same results as from a copy; only PIL needs contiguous rows (_pil_rgb)."""
    if not isinstance(crop_bgr, np.ndarray) or crop_bgr.dtype != np.uint8:
        raise ValueError(
            f"crop must be a uint8 numpy array, got {type(crop_bgr).__name__} {getattr(crop_bgr, 'dtype', '')}"
        )
    if crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or crop_bgr.shape[0] == 0 or crop_bgr.shape[1] == 0:
        raise ValueError(f"crop must be a non-empty HxWx3 BGR array, got shape {crop_bgr.shape}")
    return crop_bgr


def _pil_rgb(crop_bgr: np.ndarray) -> Image.Image:
    h, w = crop_bgr.shape[:2]
    # The "BGR" raw mode swaps channels while PIL copies the buffer: one pass instead of cvtColor + fromarray.
    return Image.frombuffer("RGB", (w, h), np.ascontiguousarray(crop_bgr), "raw", "BGR", 0, 1)


def _bits_of(bool_hash: np.ndarray) -> int:
    # Same order as imagehash's hex string: row-major, first cell in the most significant bit.
    return int.from_bytes(np.packbits(bool_hash.ravel()).tobytes(), "big")


# PIL's RGB -> 'L' conversion (libImaging/Convert.c, L24): fixed-point weights summing to 2**16 and a rounding
# term, in OpenCV's B, G, R channel order. Every sum is a whole number below 2**24, so float32 holds it exactly.
_PIL_GREY = np.array([[7471.0, 38470.0, 19595.0, 32768.0]], np.float32)


def pil_grey(crop_bgr: np.ndarray) -> np.ndarray:
    """`np.asarray(PIL RGB image.convert('L'))` of a BGR crop (a view is fine), as float32 whole numbers 0..255."""
    sums = cv2.transform(crop_bgr.astype(np.float32), _PIL_GREY)
    return np.floor(sums * np.float32(1.0 / 65536.0))  # the >> 16 of the fixed-point sum: exact in float32


@lru_cache(maxsize=8)
def _dct_rows(hash_size: int, size: int) -> np.ndarray:
    """The first hash_size rows of scipy.fftpack.dct's type-II matrix (unnormalised: 2 cos(pi k (2n+1) / 2N))."""
    k, n = np.mgrid[0:hash_size, 0:size]
    matrix = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))
    matrix.setflags(write=False)
    return matrix


# A coefficient closer than this (relative to the largest) to the median is a near-tie, whose side of the median
# the rounding of one DCT algorithm or another decides: the matrix product's coefficients differ from
# scipy.fftpack's by ~1e-15 of the largest, so 1e-9 leaves a margin of a million.
_NEAR_TIE = 1e-9


def _median(values: np.ndarray) -> float:
    """np.median's value (the mean of the middle two of an even count) from a plain sort: np.median's partition
    and checks cost ten times the sort of 64 values."""
    ordered = np.sort(values, axis=None)
    mid = ordered.size // 2
    return float(ordered[mid]) if ordered.size % 2 else float((ordered[mid - 1] + ordered[mid]) / 2)


def phash_bits(crop_bgr: np.ndarray, hash_size: int = 8) -> int:
    """imagehash.phash of the crop as an int, bit-identical to ``imagehash.phash(PIL RGB image)``.

    The steps are imagehash's own (PIL 'L' conversion, LANCZOS resize to 4*hash_size, 2-D type-II DCT, median
    threshold of its low hash_size x hash_size corner) done in numpy: the conversion in float32 (pil_grey),
    the resize as two matrix products (lanczos.py, Pillow's arithmetic), and only the low corner of the DCT, as
    a product with its rows of the DCT matrix. The DCT is the one step not exact in floating point, so a crop
    with a coefficient within _NEAR_TIE of the median (flat crops, symmetric drawings) is thresholded on scipy's
    DCT itself, imagehash's own. tests/test_hashing.py proves the parity.
    """
    if hash_size < 2:
        raise ValueError(f"hash_size must be >= 2, got {hash_size}")
    crop = _check_crop(crop_bgr)
    size = hash_size * 4
    pixels = lanczos_resize_values(pil_grey(crop), size, size)
    rows = _dct_rows(hash_size, size)
    low = rows @ pixels @ rows.T
    median = _median(low)
    if np.abs(low - median).min() <= _NEAR_TIE * np.abs(low).max():
        low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:hash_size, :hash_size]
        median = np.median(low)
    return _bits_of(low > median)


def _imagehash_algorithm(fn: Callable[..., imagehash.ImageHash]) -> Callable[[np.ndarray, int], int]:
    def run(crop: np.ndarray, hash_size: int) -> int:
        return _bits_of(fn(_pil_rgb(crop), hash_size=hash_size).hash)

    return run


_ALGORITHMS: dict[str, Callable[[np.ndarray, int], int]] = {
    "phash": phash_bits,
    "phash_simple": _imagehash_algorithm(imagehash.phash_simple),
    "dhash": _imagehash_algorithm(imagehash.dhash),
    "dhash_vertical": _imagehash_algorithm(imagehash.dhash_vertical),
    "ahash": _imagehash_algorithm(imagehash.average_hash),
    "whash": _imagehash_algorithm(imagehash.whash),
}
assert tuple(_ALGORITHMS) == HASH_ALGORITHMS, "config.HASH_ALGORITHMS names the algorithms implemented here"


# One small thumbnail per keyed crop serves the flatness test and the colour signature: 48 is a multiple of the
# colour grid (3), so the grid comes from it by OpenCV's fast integer-factor INTER_AREA path; an arbitrary crop
# size takes the slower fractional path only once. (KeyMemo, which runs on every slot of every frame, compares
# cheaper thumbnails of its own: keymemo.py.)
THUMB = 48


def thumbnail(crop_bgr: np.ndarray) -> np.ndarray:
    """The crop averaged down to THUMB x THUMB (each pixel about the mean of its area)."""
    h, w = crop_bgr.shape[:2]
    if h > 2 * THUMB and w > 2 * THUMB:
        # Bilinear to twice the size, then an exact 2x2 average: within ~0.6 grey levels of a true area
        # average at a quarter of the cost of OpenCV's fractional INTER_AREA (~25 us against ~105 us).
        crop_bgr = cv2.resize(crop_bgr, (2 * THUMB, 2 * THUMB), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(crop_bgr, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def is_flat(crop_bgr: np.ndarray, thumb: np.ndarray | None = None) -> bool:
    """True for a crop with no texture to hash (an empty shelf back, a blank wall): see FLAT_STD."""
    grey = cv2.cvtColor(thumbnail(crop_bgr) if thumb is None else thumb, cv2.COLOR_BGR2GRAY)
    return float(grey.std()) < FLAT_STD


def colour_signature(crop_bgr: np.ndarray, grid: int = COLOUR_GRID, thumb: np.ndarray | None = None) -> bytes:
    """Mean OpenCV 8-bit Lab (L*255/100, a+128, b+128) of each cell of a grid x grid partition, row-major."""
    if thumb is None:
        thumb = thumbnail(_check_crop(crop_bgr))
    # Area averages of whole cells, so a 1-2 px shift or sensor noise barely moves the means.
    cells = cv2.resize(thumb, (grid, grid), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(cells, cv2.COLOR_BGR2Lab).tobytes()


def colour_distance(a: bytes, b: bytes) -> float:
    """Largest per-cell colour difference (Lab units, L at half weight); inf when the formats differ."""
    if len(a) != len(b) or len(a) % 3:
        return float("inf")
    worst = 0.0
    for i in range(0, len(a), 3):
        # L is stored as L*255/100, a and b as Lab units + 128.
        dl = (a[i] - b[i]) * (100.0 / 255.0) * L_WEIGHT
        da = a[i + 1] - b[i + 1]
        db = a[i + 2] - b[i + 2]
        worst = max(worst, (dl * dl + da * da + db * db) ** 0.5)
    return worst


class Hasher:
    """Computes the PerceptualKey of slot crops with one configured algorithm and colour tolerance."""

    ALGORITHMS: ClassVar[tuple[str, ...]] = HASH_ALGORITHMS

    def __init__(
        self, algorithm: str = "phash", hash_size: int = 8, colour_tolerance: int = DEFAULT_COLOUR_TOLERANCE
    ) -> None:
        if algorithm not in _ALGORITHMS:
            raise ValueError(f"unknown hash algorithm {algorithm!r}; expected one of {', '.join(self.ALGORITHMS)}")
        # The Hamming index and the cache keys are 64-bit: other sizes would silently never match old entries.
        if hash_size != 8:
            raise ValueError(f"hash_size must be 8 (64-bit keys), got {hash_size!r}")
        if isinstance(colour_tolerance, bool) or not isinstance(colour_tolerance, int) or colour_tolerance < 0:
            raise ValueError(f"colour_tolerance must be a non-negative int, got {colour_tolerance!r}")
        self.algorithm = algorithm
        self.hash_size = hash_size
        self.colour_tolerance = colour_tolerance
        self._hash = _ALGORITHMS[algorithm]
        self._matches: dict[tuple[bytes, bytes], bool] = {}  # colour_matches answers, see there

    def key(self, crop_bgr: np.ndarray, thumb: np.ndarray | None = None) -> PerceptualKey:
        """The crop's key; `thumb` is its thumbnail() when the caller has it already."""
        crop = _check_crop(crop_bgr)
        if thumb is None:
            thumb = thumbnail(crop)
        bits = FLAT_BITS if is_flat(crop, thumb) else self._hash(crop, self.hash_size)
        return PerceptualKey(bits=bits, colour=colour_signature(crop, thumb=thumb))

    def colour_matches(self, a: bytes, b: bytes) -> bool:
        """True when two colour signatures are the same product colour (every cell within the tolerance).

        Remembered per pair: a fixed camera's reused keys meet the same stored keys frame after frame (~3 colour
        checks a lookup here), and a dict hit (bytes cache their hash) costs a tenth of the 9-cell loop. The
        answer is a pure function of the pair, so remembering it changes no result; the table is dropped
        whenever it reaches MATCH_MEMO entries, which bounds its memory (~10 MB) on a box that runs for years.
        """
        pair = (a, b)
        known = self._matches.get(pair)
        if known is None:
            known = colour_distance(a, b) <= self.colour_tolerance
            if len(self._matches) >= MATCH_MEMO:
                self._matches.clear()
            self._matches[pair] = known
        return known
