"""The key memo: a fixed camera's slot keys, recomputed only when the slot's picture has changed."""

from __future__ import annotations

import cv2
import numpy as np

from shelfsense.recognition.hashing import Hasher, PerceptualKey
from shelfsense.recognition.pictures import slot_pictures

__all__ = ["KeyMemo"]


class KeyMemo:
    """Keys of fixed-camera slots, recomputed only when the slot's picture has changed.

    A shelf camera does not move, so most slots show the same facing frame after frame, and the pHash
    (a LANCZOS resize and a DCT, ~0.15 ms a crop here) would be recomputed for nothing. The memo keeps, per
    slot, the 8x8 colour thumbnail (pictures.py) of the crop its key was computed from; while a new crop's
    thumbnail stays within `threshold` grey levels (mean absolute difference) of it, the old key is reused.
    Comparing with the thumbnail of the key, not of the previous frame, keeps slow drift (exposure) from
    accumulating unseen. A threshold of 0 turns the memo off.

    A slot keeps the thumbnails of its last `references` keyed pictures, most recently matched first. A mount that
    shakes leaves a slot a pixel off for a frame and then back: with one reference the return was recomputed as
    well, and so were a facing's few positions in turn. Each reference answers only for pictures within the
    threshold of itself, so an older one can only bring back the key of the very picture it was computed from (a
    product put back in its facing gets its own key again). Measured by bench/measure_memo.py (docs/benchmarks.md,
    "Hit path"): a 1 px shift moves the thumbnail of a real grocery photo by ~2 levels, JPEG re-encoding by under
    1, while two different products differ by far more than the threshold of 3.
    """

    def __init__(self, hasher: Hasher, threshold: float = 3.0, max_slots: int = 4096, references: int = 4) -> None:
        self.hasher = hasher
        self.threshold = threshold
        self.max_slots = max_slots
        self.references = references
        self._slots: dict[tuple[str, int], list[tuple[np.ndarray, PerceptualKey]]] = {}

    def key(self, slot: tuple[str, int], crop_bgr: np.ndarray) -> PerceptualKey:
        return self.key_and_reference(slot, crop_bgr)[0]

    def key_and_reference(
        self, slot: tuple[str, int], crop_bgr: np.ndarray, thumb: np.ndarray | None = None
    ) -> tuple[PerceptualKey, object | None]:
        """The key and the memo's reference: one object for as long as the key is reused (None: memo off).

        `thumb` is the crop's memo thumbnail when the caller has it (pictures.SlotPictures.memo_thumbs). Other
        per-slot figures computed from the same picture as the key (slotstate.LookMaker's edge share) are reused
        while the reference is the same object.
        """
        if self.threshold <= 0:
            return self.hasher.key(crop_bgr), None
        if thumb is None:
            thumb = slot_pictures([crop_bgr]).memo_thumbs[0]
        known = self._slots.get(slot)
        if known is not None:
            for i, (reference, key) in enumerate(known):
                # The L1 norm (an exact integer sum in float64) over the value count is the mean absolute
                # difference, the same float as absdiff().mean(), without the temporary array: ~1 us instead of ~10.
                if cv2.norm(thumb, reference, cv2.NORM_L1) / thumb.size <= self.threshold:
                    if i:
                        known.insert(0, known.pop(i))
                    return key, reference
        key = self.hasher.key(crop_bgr)
        if known is None:
            if len(self._slots) >= self.max_slots:
                self._slots.pop(next(iter(self._slots)))  # unknown cameras come and go; keep memory bounded
            known = self._slots[slot] = []
        # A copy: the frame's stacked thumbnails would otherwise stay alive with the reference.
        reference = thumb.copy()
        known.insert(0, (reference, key))
        del known[self.references :]
        return key, reference
