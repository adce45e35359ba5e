"""Pillow's LANCZOS resize of an 8-bit grey image, bit for bit, as two small matrix products.

pHash resizes every slot crop to 32x32 with PIL's LANCZOS filter, and that resize was most of a key's cost
(~140 us of ~320 us for a 136x186 crop here): Pillow runs a generic per-pixel loop for it. Its arithmetic is
simple, though (Pillow's src/libImaging/Resample.c): per output pixel, fixed-point integer coefficients with
22 fraction bits; one pass along each axis, each rounded and clipped to uint8. Both passes are weighted sums of
integers, so they are exact as float64 matrix products (every partial sum stays far below 2**53:
255 * 2**22 * 2**7 taps < 2**37), and BLAS does them in a few microseconds. The coefficients are built with
the same double-precision steps as Resample.c (precompute_coeffs, lanczos_filter, normalize_coeffs_8bpc).

Which pass runs first is Pillow's choice and is not the same in every release (Pillow 13 picks it per size
pair, and the rounding between the passes makes the two orders differ by a grey level here and there). So the
order is not assumed: the first time a size pair is seen, both orders run on probe images and the one equal to
the installed Pillow on every probe is kept; if neither is, or both are (the probes could not tell them apart),
that size pair stays on Pillow itself. tests/test_hashing.py checks the parity on odd sizes and on photos.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

__all__ = ["lanczos_resize_grey", "lanczos_resize_values"]

_PRECISION_BITS = 32 - 8 - 2  # Resample.c: PRECISION_BITS for 8-bit images
_HALF = float(1 << (_PRECISION_BITS - 1))  # the rounding term each weighted sum starts from
_SCALE = 1.0 / (1 << _PRECISION_BITS)  # a power of two: multiplying by it is exact
_SUPPORT = 3.0  # lanczos_filter's support
_LANCZOS = Image.Resampling.LANCZOS


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3)
    return 0.0


def _fixed(k: float) -> int:
    # normalize_coeffs_8bpc: round half away from zero, then C's truncating int conversion.
    return int(-0.5 + k * (1 << _PRECISION_BITS)) if k < 0 else int(0.5 + k * (1 << _PRECISION_BITS))


@lru_cache(maxsize=64)
def _weights(in_size: int, out_size: int) -> np.ndarray:
    """in_size x out_size matrix of Pillow's fixed-point coefficients (as float64), column j for output j."""
    scale = float(in_size) / out_size  # precompute_coeffs with the whole image as the box (in0 = 0)
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ss = 1.0 / filterscale
    matrix = np.zeros((in_size, out_size), np.float64)
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        ww = 0.0
        for w in k:  # summed in order, as the C loop does
            ww += w
        if ww != 0.0:
            k = [w / ww for w in k]
        matrix[xmin : xmin + xmax, xx] = [_fixed(w) for w in k]
    matrix.setflags(write=False)
    return matrix


_BANDS = 4  # groups of outputs a pass is cut into (measured: 2-4 halve a 136 -> 32 pass, 8 cost more calls)


@lru_cache(maxsize=64)
def _bands(in_size: int, out_size: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """_weights cut into up to _BANDS groups of outputs, each with only the inputs its coefficients reach.

    A LANCZOS output reads ~6x the scale in inputs (26 of 136 for 136 -> 32), so the full matrix is mostly zeros;
    a band's product skips them. The sums are of whole numbers far below 2**53 (see the module doc), so any
    grouping gives exactly the full product's values. Each band: (first input, end input, first output, end
    output, its block of coefficients).
    """
    weights = _weights(in_size, out_size)
    bands = []
    for outs in np.array_split(np.arange(out_size), min(_BANDS, out_size)):
        o0, o1 = int(outs[0]), int(outs[-1]) + 1
        used = np.flatnonzero(weights[:, o0:o1].any(axis=1))
        i0, i1 = (int(used[0]), int(used[-1]) + 1) if used.size else (0, 0)
        block = np.ascontiguousarray(weights[i0:i1, o0:o1])
        block.setflags(write=False)
        bands.append((i0, i1, o0, o1, block))
    return tuple(bands)


def _pass(values: np.ndarray, in_size: int, out_size: int, horizontal: bool) -> np.ndarray:
    """One resampling pass (along rows when horizontal, else along columns), before clip8."""
    if horizontal:
        out = np.empty((values.shape[0], out_size))
        for i0, i1, o0, o1, block in _bands(in_size, out_size):
            np.matmul(values[:, i0:i1], block, out=out[:, o0:o1])
    else:
        out = np.empty((out_size, values.shape[1]))
        for i0, i1, o0, o1, block in _bands(in_size, out_size):
            np.matmul(block.T, values[i0:i1], out=out[o0:o1])
    return out


def _clip8(sums: np.ndarray) -> np.ndarray:
    """clip8(): (sum >> PRECISION_BITS) clamped to 0..255, in place on the fresh product `sums`.

    Floor of an exact power-of-two scaling is that shift. In place and with minimum/maximum rather than np.clip
    (whose checks cost more than the arithmetic on a 186x32 array): the same values, fewer passes and copies.
    """
    sums += _HALF
    sums *= _SCALE
    np.floor(sums, out=sums)
    np.maximum(sums, 0.0, out=sums)
    return np.minimum(sums, 255.0, out=sums)


def _resample(grey: np.ndarray, width: int, height: int, horizontal_first: bool) -> np.ndarray:
    """The resized image as float64 grey levels (whole numbers 0..255); `grey` is uint8 or such float64."""
    in_h, in_w = grey.shape
    out = grey if grey.dtype == np.float64 else grey.astype(np.float64)
    # Resample.c skips a pass whose size does not change (ImagingResampleInner's need_horizontal/vertical).
    for horizontal in (horizontal_first, not horizontal_first):
        if horizontal and in_w != width:
            out = _clip8(_pass(out, in_w, width, horizontal=True))
        elif not horizontal and in_h != height:
            out = _clip8(_pass(out, in_h, height, horizontal=False))
    return out


def _pillow(grey: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(grey, "L").resize((width, height), _LANCZOS))


@lru_cache(maxsize=64)
def _horizontal_first(in_h: int, in_w: int, width: int, height: int) -> bool | None:
    """The pass order that reproduces the installed Pillow for this size pair; None: use Pillow itself."""
    if in_w == width or in_h == height:
        return True  # one pass only: no order to choose
    rng = np.random.default_rng(in_h * 65_537 + in_w)
    yy, xx = np.mgrid[0:in_h, 0:in_w]
    probes = [rng.integers(0, 256, (in_h, in_w), dtype=np.uint8) for _ in range(3)]
    probes.append(((xx * 37 + yy * 11) % 256).astype(np.uint8))
    expected = [_pillow(p, width, height) for p in probes]
    matching = [
        first
        for first in (True, False)
        if all(np.array_equal(_resample(p, width, height, first), e) for p, e in zip(probes, expected, strict=True))
    ]
    return matching[0] if len(matching) == 1 else None


def lanczos_resize_grey(grey: np.ndarray, width: int, height: int) -> np.ndarray:
    """`Image.fromarray(grey, 'L').resize((width, height), Image.LANCZOS)` as a uint8 array, bit-identical."""
    return lanczos_resize_values(grey, width, height).astype(np.uint8)


def lanczos_resize_values(grey: np.ndarray, width: int, height: int) -> np.ndarray:
    """lanczos_resize_grey's result as float64 grey levels, from uint8 grey or float64 whole numbers 0..255.

    pHash goes on in float64 (the DCT), so its grey image and its thumbnail need no uint8 round trips.
    """
    in_h, in_w = grey.shape
    if (in_w, in_h) == (width, height):
        return grey.astype(np.float64)  # always a copy, as Pillow's resize returns a new image
    first = _horizontal_first(in_h, in_w, width, height)
    if first is None:
        return _pillow(grey.astype(np.uint8), width, height).astype(np.float64)
    return _resample(grey, width, height, first)
