"""A frame's slot pictures: one small colour picture a slot, from which both per-frame comparisons are made.

Every slot of every frame is compared twice with its past: by the key memo (keymemo.py, "has the picture changed
since its key was computed?", an 8x8 colour thumbnail) and by the slot-state cues (slotstate.py, "did it move since
the previous frame?", a 16x12 grey thumbnail). Both are averages over the slot, so both come from one PICTURE (32x32
colour) made once a slot: an exact 2x2 area halving takes it to 16x16, whose area average to 16x12 in grey is the cue
thumbnail and whose next halving is the memo thumbnail. A frame's pictures are stacked, so each of those steps is one
OpenCV call for all slots (no output row reads rows of two slots: tests/test_slotstate.py).

The picture is a bilinear resample of the slot as the recognizer decodes it for pictures: at a reduced size
(picture_reduction, 1/4 for the footage's 136x186 slots, 34x46 px), where libjpeg-turbo has already averaged the
pixels in its inverse DCT, so every pixel of the slot counts and sensor noise and a pixel of shake average out
(bench/measure_cues.py, bench/measure_memo.py). A frame whose slots all keep their keys needs nothing else and is
never decoded whole. A slot given at full size (cache off, `slotstate.look_of`) is area-averaged by the whole factor
that leaves it just above the picture's size first, to the same effect. Rounds before: a 64x64 picture of the
full-size slot (fourth round; 8.4 % of real photos read a 2 px move as motion, against 3.7 % now), and before that
two passes over the full-size pixels (docs/benchmarks.md, "Hit path").
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from shelfsense.types import Box

__all__ = [
    "CUE_THUMB",
    "MEMO_THUMB",
    "PICTURE",
    "SlotPictures",
    "picture_box",
    "picture_into",
    "picture_reduction",
    "slot_pictures",
]

PICTURE = (32, 32)  # w, h of a slot's picture
MEMO_THUMB = (8, 8)  # the key memo's colour thumbnail: 8x8 pixels of the picture each
CUE_THUMB = (16, 12)  # the slot-state cues' grey thumbnail


def picture_reduction(boxes: Sequence[Box]) -> int:
    """The JPEG decode reduction (1, 2, 4 or 8) the camera's pictures are made at: the largest that leaves every slot
    at least PICTURE in size, so that the picture still averages the pixels it comes from (decode.decode_frame).

    A frame whose slots all keep their keys is decoded at this reduction only: ~0.78 of a full decode here at 1/2,
    ~0.67 at 1/4, and the pictures come from that many fewer pixels. The slot's picture covers the same part of the
    shelf at any reduction, so the memo's and the cues' thresholds, set in grey levels of the picture, still hold.
    """
    pw, ph = PICTURE
    reduce = 8
    while reduce > 1 and any(w // reduce < pw or h // reduce < ph for _, _, w, h in boxes):
        reduce //= 2
    return reduce


def picture_box(box: Box, reduce: int) -> Box:
    """A slot box in the frame decoded at 1/reduce of its size."""
    x, y, w, h = box
    x0, y0 = x // reduce, y // reduce
    return x0, y0, max(1, (x + w) // reduce - x0), max(1, (y + h) // reduce - y0)


def picture_into(crop_bgr: np.ndarray, out: np.ndarray) -> None:
    """The slot's PICTURE-sized colour picture, written into `out` (h x w x 3 uint8)."""
    h, w = crop_bgr.shape[:2]
    # A slot at least twice the picture's size on both sides is area-averaged by the whole factor that leaves it at
    # the picture's size or just above, as the reduced decode would (picture_reduction), so that every pixel counts
    # and a pixel of shake is not a different sample.
    k = min(w // PICTURE[0], h // PICTURE[1])
    if k >= 2:
        crop_bgr = cv2.resize(crop_bgr[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    cv2.resize(crop_bgr, PICTURE, dst=out, interpolation=cv2.INTER_LINEAR)


class SlotPictures:
    """The memo and cue thumbnails of a frame's slots, from one picture a slot."""

    __slots__ = ("cue_greys", "memo_thumbs", "pictures")

    def __init__(self, pictures: np.ndarray, memo_thumbs: np.ndarray, cue_greys: np.ndarray) -> None:
        self.pictures = pictures  # n x 32 x 32 x 3 uint8: the key memo measures a keyed slot's response to shake on it
        self.memo_thumbs = memo_thumbs  # n x 8 x 8 x 3 uint8
        self.cue_greys = cue_greys  # n x 12 x 16 uint8


def slot_pictures(crops: Sequence[np.ndarray]) -> SlotPictures:
    """Every slot's memo thumbnail and cue thumbnail, in one stacked array each."""
    n = len(crops)
    pw, ph = PICTURE
    mw, mh = MEMO_THUMB
    cw, ch = CUE_THUMB
    if n == 0:
        return SlotPictures(
            np.empty((0, ph, pw, 3), np.uint8), np.empty((0, mh, mw, 3), np.uint8), np.empty((0, ch, cw), np.uint8)
        )
    stack = np.empty((n * ph, pw, 3), np.uint8)
    for i, crop in enumerate(crops):
        picture_into(crop, stack[i * ph : (i + 1) * ph])
    pictures = stack.reshape(n, ph, pw, 3)
    while stack.shape[1] > 16:  # down to 16x16 a slot
        h, w = stack.shape[:2]
        stack = cv2.resize(stack, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    cue = cv2.resize(stack, (cw, ch * n), interpolation=cv2.INTER_AREA)
    greys = cv2.cvtColor(cue, cv2.COLOR_BGR2GRAY).reshape(n, ch, cw)
    memo = cv2.resize(stack, (mw, mh * n), interpolation=cv2.INTER_AREA).reshape(n, mh, mw, 3)
    return SlotPictures(pictures, memo, greys)
