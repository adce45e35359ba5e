"""A key-memo decision that forgives a shaking mount and a drifting exposure, but not a change of picture.

KeyMemo reuses a slot's key while the slot's 8x8 colour thumbnail stays within `threshold` grey levels (mean
absolute difference) of the thumbnail of the crop the key was computed from. A 0.5-1.5 px shake of the camera, which
pHash is built to ignore, moves that thumbnail by ~2-3.5 levels, and a few percent of exposure drift by as much, so
keys are recomputed for nothing.

To first order, a small move of the picture by (dx, dy) px and a gain g (every value times 1 + g) change the
thumbnail by D = M_new - M_ref ~ dx * Gx + dy * Gy + g * M_ref, where Gx, Gy are the thumbnail's response to a 1 px
move in x and in y. The three 192-value columns are measured once, when the key is computed (shift_response, or
the cheaper grid_shift_response when the thumbnail is an exact area average of a bilinear grid), and a thumbnail
that fails the plain test is explained by the least-squares (dx, dy, g). The key is reused only when that
explanation is small (|dx|, |dy| <= MAX_SHIFT px, |g| <= MAX_GAIN) and what it leaves unexplained is within the
threshold on average and within MAX_CELL in every value. A change of product leaves a residual of tens of levels on
average (at least 14 over every pair of different products measured); a hand or a label over part of the facing
leaves one of up to 100-250 on the cells it covers, which three columns cannot absorb. The worst-value bound also
applies to the plain test: a block over a few percent of the facing in a colour close to the picture's average
moves the mean by under the threshold, and KeyMemo's plain test alone reuses the key across it.

Measured by bench/measure_memo.py (its "Shift-tolerant decisions" tables). On the synthetic footage (seeds 1-3,
64x48 thumbnail of the study) keys recomputed a frame fall from 1.87-1.97 to 0.67-0.92, none reused across a change
of truth; a fit costs ~7 us. Pure functions, no state: KeyMemo (keymemo.py) keeps the ShiftResponse beside each
reference thumbnail (~2.3 KB of arrays) and tries the thumbnail a fit last accepted before fitting again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

# A shake of the synthetic footage is 0.5-1.5 px; a whole 2 px move is fitted as up to ~2.2 px on real photos
# (the first-order model's error), so 2.5 accepts every move up to 2 px. A thumbnail cell is ~17x23 px of a
# 136x186 slot, so 2.5 px is still well inside the first-order model.
MAX_SHIFT = 2.5
# Exposure drifts (the synthetic footage: +-8 % over 40-90 s). The Hasher's colour tolerance keeps +-10 % inside
# one key anyway (hashing.L_WEIGHT), so a gain within this is the same key; a slow drift cannot accumulate beyond
# it because the comparison is with the keyed thumbnail, not the previous frame's.
MAX_GAIN = 0.1
# No single thumbnail value (grey levels) may be further than this from the reference once moved. On real photos
# the fitted moves, JPEG and noise leave at most ~23 in a value (P99 ~16); flat blocks over 3-10 % of a facing
# leave P50 50-200. Swept over 16-48 (bench/measure_memo.py): at 20 at most 1-2 of the 296 moved photos of a
# camera change are lost to this bound; of 1184 flat blocks over 10 % of a facing none is reused (random colour or
# grey; the plain test alone reuses 26 and 125), of grey 5 % blocks 7 (plain: 864). On footage it recomputes keys
# when a hand enters or leaves a corner of a slot, which moves the mean by ~1-3 levels but one cell by 30-90.
MAX_CELL = 20.0
# Added to the diagonal of the normal equations: keeps them invertible for a flat crop (an empty shelf back,
# Gx = Gy ~ 0), where any change then fits as a move far out of bounds and only the first test can reuse.
_RIDGE = 1e-3

Thumb = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class ShiftResponse:
    """A keyed crop's thumbnail response to a 1 px move (x, y) and to a gain, and its normal equations' inverse."""

    basis: np.ndarray  # (n, k) float32, k = 3 (or 2 without gain): change per px right, per px down, per unit gain
    inverse: np.ndarray  # (k, k) float32: (B^T B + ridge)^-1, so that inverse @ (B^T D) is the fitted (dx, dy, g)


def _ridge_inverse(normal: np.ndarray) -> np.ndarray:
    """(normal + _RIDGE * I)^-1 of a symmetric k x k matrix: by cofactors in Python floats for k = 3 (~2 us against
    ~9 us for numpy's eye + add + inv on a matrix this small), by numpy otherwise."""
    if normal.shape != (3, 3):
        return np.linalg.inv(normal + _RIDGE * np.eye(len(normal)))
    (a, b, c), (_, e, f), (_, _, i) = normal.tolist()
    a, e, i = a + _RIDGE, e + _RIDGE, i + _RIDGE
    # Cofactors of the symmetric matrix [[a b c] [b e f] [c f i]]; the adjugate is symmetric too.
    ca, cb, cc = e * i - f * f, c * f - b * i, b * f - c * e
    ce, cf, ci = a * i - c * c, b * c - a * f, a * e - b * b
    det = a * ca + b * cb + c * cc
    return np.array([[ca, cb, cc], [cb, ce, cf], [cc, cf, ci]]) / det


def _response(columns: list[np.ndarray]) -> ShiftResponse:
    basis = np.ascontiguousarray(np.stack(columns, axis=1), dtype=np.float32)
    # In float64: the gain column's squares sum to ~1e6-1e7, the slopes' to ~1e2-1e3.
    normal = basis.T.astype(np.float64) @ basis
    return ShiftResponse(basis=basis, inverse=_ridge_inverse(normal).astype(np.float32))


def _gain_column(reference: np.ndarray) -> np.ndarray:
    # A gain g multiplies every value by 1 + g: the thumbnail changes by g times itself.
    return reference.astype(np.float32).ravel()


def shift_response(
    crop: np.ndarray, thumb_fn: Thumb, reference: np.ndarray | None = None, with_gain: bool = True
) -> ShiftResponse:
    """The response of thumb_fn's thumbnail to a 1 px move of the crop's picture, by central differences of views.

    crop[1:-1, 2:] shows the picture 2 px further left than crop[1:-1, :-2]; both are the same size, so their
    thumbnails sample alike and differ by the move alone (half of it a px). Views cost no copy, but the four
    thumbnails cost four thumbnails' time (~80-90 us for a 136x186 slot); grid_shift_response is ~2.5x cheaper for a
    thumbnail that is an area average of a grid. `reference` is thumb_fn(crop), when the caller has it.
    with_gain=False fits the move alone. The crop must be at least 3 px a side.
    """
    if crop.ndim < 2 or crop.shape[0] < 3 or crop.shape[1] < 3:
        raise ValueError(f"crop must be at least 3x3 px, got shape {crop.shape}")

    def t(view: np.ndarray) -> np.ndarray:
        return thumb_fn(view).astype(np.float32).ravel()

    # A picture moving right by 1 px shows at x what was at x - 1: minus the derivative along x.
    columns = [
        (t(crop[1:-1, :-2]) - t(crop[1:-1, 2:])) * np.float32(0.5),
        (t(crop[:-2, 1:-1]) - t(crop[2:, 1:-1])) * np.float32(0.5),
    ]
    if with_gain:
        columns.append(_gain_column(thumb_fn(crop) if reference is None else reference))
    return _response(columns)


def grid_shift_response(
    grid: np.ndarray, crop_shape: tuple[int, ...], reference: np.ndarray, with_gain: bool = True
) -> ShiftResponse:
    """shift_response for a thumbnail that is an area average of `grid`, the crop resized (bilinear) to a grid:
    the thumbnail's response is the area average of the grid's own slope, scaled from grid px to crop px.

    One central difference of the grid in x and in y (the grid's neighbours are 136/32 and 186/32 crop px apart for
    the 32x32 picture of a 136x186 slot, so this is the crop's slope smoothed over a few px) instead of four thumbnails:
    ~30 us against ~80-90. On real photos it reuses as many moved copies; on the footage it recomputed ~0.05 keys
    a frame more than the views (bench/measure_memo.py). `reference` is the thumbnail (its size sets the cells).
    """
    gh, gw = grid.shape[:2]
    size = (reference.shape[1], reference.shape[0])
    columns = []
    for dx, dy, crop_px, grid_px in ((1, 0, crop_shape[1], gw), (0, 1, crop_shape[0], gh)):
        # ksize=1: the plain [-1, 0, 1] difference, twice the slope; replicated borders give the edge cells the
        # one-sided half of it, as a move that brings in picture the crop does not have.
        slope = cv2.Sobel(grid, cv2.CV_32F, dx, dy, ksize=1, borderType=cv2.BORDER_REPLICATE)
        cells = cv2.resize(slope, size, interpolation=cv2.INTER_AREA).ravel()
        columns.append(cells * np.float32(-0.5 * grid_px / crop_px))
    if with_gain:
        columns.append(_gain_column(reference))
    return _response(columns)


def plain_distance(reference: np.ndarray, new_thumb: np.ndarray) -> float:
    """KeyMemo's distance: mean absolute difference of two thumbnails (grey levels)."""
    # The L1 norm is an exact integer sum for uint8 thumbnails: the same float as absdiff().mean(), cheaper.
    return cv2.norm(new_thumb, reference, cv2.NORM_L1) / new_thumb.size


@dataclass(frozen=True, slots=True)
class Fit:
    dx: float  # px the picture moved right
    dy: float  # px it moved down
    gain: float  # relative exposure change (0.05: 5 % brighter); 0 when the response has no gain column
    mean_residual: float  # grey levels the move and gain leave unexplained, on average
    max_residual: float  # and in the worst thumbnail value


def fit_shift(reference: np.ndarray, response: ShiftResponse, new_thumb: np.ndarray) -> Fit:
    """Least squares of new_thumb - reference ~ dx*Gx + dy*Gy (+ gain*reference), for study and tests."""
    d = np.subtract(new_thumb, reference, dtype=np.float32).ravel()
    c = response.inverse @ (d @ response.basis)
    residual = np.abs(d - response.basis @ c)
    gain = float(c[2]) if c.size > 2 else 0.0
    return Fit(float(c[0]), float(c[1]), gain, float(residual.mean()), float(residual.max()))


def reusable(
    reference: np.ndarray,
    response: ShiftResponse | None,
    new_thumb: np.ndarray,
    threshold: float,
    max_shift: float = MAX_SHIFT,
    max_gain: float = MAX_GAIN,
    max_cell: float = MAX_CELL,
) -> bool:
    """True when new_thumb shows the reference's picture: within `threshold` on average and max_cell in every value
    as it is (response None: this test alone), or once moved by at most max_shift px in x and y and scaled by at
    most max_gain. fit_shift's decision in fewer numpy calls: ~3 us when the first test passes, ~8 with the fit."""
    if same(reference, new_thumb, threshold, max_cell):
        return True
    return response is not None and moved(reference, response, new_thumb, threshold, (max_shift, max_gain, max_cell))


def same(reference: np.ndarray, new_thumb: np.ndarray, threshold: float, max_cell: float = MAX_CELL) -> bool:
    """reusable's first test: the picture as it is, within `threshold` on average and max_cell in every value."""
    if plain_distance(reference, new_thumb) > threshold:
        return False
    return cv2.norm(new_thumb, reference, cv2.NORM_INF) <= max_cell


def moved(
    reference: np.ndarray,
    response: ShiftResponse,
    new_thumb: np.ndarray,
    threshold: float,
    bounds: tuple[float, float, float] = (MAX_SHIFT, MAX_GAIN, MAX_CELL),
) -> bool:
    """reusable's second test alone: the picture moved by at most max_shift px and scaled by at most max_gain
    (`bounds` = max_shift, max_gain, max_cell)."""
    max_shift, max_gain, max_cell = bounds
    d = np.subtract(new_thumb, reference, dtype=np.float32).ravel()
    c = response.inverse @ (d @ response.basis)
    dx, dy, *gain = c.tolist()
    if abs(dx) > max_shift or abs(dy) > max_shift or (gain and abs(gain[0]) > max_gain):
        return False  # no small move explains it: the residual need not be computed
    residual = d - response.basis @ c
    # cv2.norm of a float32 vector: the absolute sum and the largest absolute value without numpy temporaries.
    return cv2.norm(residual, cv2.NORM_L1) / residual.size <= threshold and cv2.norm(residual, cv2.NORM_INF) <= max_cell
