"""The key memo: a fixed camera's slot keys, recomputed only when the slot's picture has changed."""

from __future__ import annotations

import numpy as np

from shelfsense.recognition.hashing import Hasher, PerceptualKey
from shelfsense.recognition.memo_shift import ShiftResponse, grid_shift_response, moved, same
from shelfsense.recognition.pictures import slot_pictures

__all__ = ["KeyMemo", "KeyedPicture"]


class KeyMemo:
    """Keys of fixed-camera slots, recomputed only when the slot's picture has changed.

    A shelf camera does not move, so most slots show the same facing frame after frame, and the pHash
    (a LANCZOS resize and a DCT, ~0.15 ms a crop here) would be recomputed for nothing. The memo keeps, per
    slot, the 8x8 colour thumbnail (pictures.py) of the crop its key was computed from; while a new crop's
    thumbnail stays within `threshold` grey levels of it on average and memo_shift.MAX_CELL in every value, or is
    that thumbnail moved by a pixel or two and a little brighter (memo_shift.py: a camera's shake and exposure, which
    pHash is built to ignore), the old key is reused. Comparing with the thumbnail of the key, not of the previous
    frame, keeps slow drift from accumulating unseen. A threshold of 0 turns the memo off; shake=False keeps the
    plain test only.

    A slot keeps the thumbnails of its last `references` keyed pictures, most recently matched first. A mount that
    shakes leaves a slot a pixel off for a frame and then back: with one reference the return was recomputed as
    well, and so were a facing's few positions in turn. Each reference answers only for pictures within the
    threshold of itself, so an older one can only bring back the key of the very picture it was computed from (a
    product put back in its facing gets its own key again). Measured by bench/measure_memo.py (docs/benchmarks.md,
    "Hit path"): a 1 px shift moves the thumbnail of a real grocery photo by ~2 levels, JPEG re-encoding by under
    1, while two different products differ by far more than the threshold of 3.
    """

    def __init__(
        self, hasher: Hasher, threshold: float = 3.0, max_slots: int = 4096, references: int = 4, shake: bool = True
    ) -> None:
        self.hasher = hasher
        self.threshold = threshold
        self.max_slots = max_slots
        self.references = references
        self.shake = shake  # forgive a small move and exposure gain (memo_shift.py)
        self._slots: dict[tuple[str, int], list[KeyedPicture]] = {}

    def key(self, slot: tuple[str, int], crop_bgr: np.ndarray) -> PerceptualKey:
        return self.key_and_reference(slot, crop_bgr)[0]

    def key_and_reference(
        self,
        slot: tuple[str, int],
        crop_bgr: np.ndarray,
        thumb: np.ndarray | None = None,
        picture: np.ndarray | None = None,
    ) -> tuple[PerceptualKey, KeyedPicture | None]:
        """The key and the keyed picture it was computed from, the same object for as long as the key is reused
        (None: memo off).

        `thumb` and `picture` are the crop's memo thumbnail and picture when the caller has them (pictures.py).
        """
        if self.threshold <= 0:
            return self.hasher.key(crop_bgr), None
        if thumb is None or picture is None:
            made = slot_pictures([crop_bgr])
            thumb, picture = made.memo_thumbs[0], made.pictures[0]
        return self.reused(slot, thumb) or self.computed(slot, crop_bgr, thumb, picture)

    def reused(self, slot: tuple[str, int], thumb: np.ndarray) -> tuple[PerceptualKey, KeyedPicture] | None:
        """The slot's key and keyed picture if this memo thumbnail shows a picture it was computed from, else None.

        Needs no pixels but the thumbnail: the recognizer decodes a frame whose slots all keep their keys at a
        reduced size only (pictures.picture_reduction).
        """
        if self.threshold <= 0:
            return None
        known = self._slots.get(slot)
        if known is None:
            return None
        last = known[0]
        if same(last.thumb, thumb, self.threshold):  # most slots of most frames: the last picture, as it is
            return last.key, last
        found = self._find(known, thumb)
        return None if found is None else (found.key, found)

    def computed(
        self, slot: tuple[str, int], crop_bgr: np.ndarray, thumb: np.ndarray, picture: np.ndarray
    ) -> tuple[PerceptualKey, KeyedPicture | None]:
        """The key computed from the crop, kept with its picture's thumbnail as the slot's latest reference.

        `picture` covers the same part of the shelf as the crop at whatever decode reduction: the move the memo
        forgives is measured in the crop's own pixels (grid_shift_response scales the picture's slope to them).
        """
        key = self.hasher.key(crop_bgr)
        if self.threshold <= 0:
            return key, None
        known = self._slots.get(slot)
        if known is None:
            if len(self._slots) >= self.max_slots:
                self._slots.pop(next(iter(self._slots)))  # unknown cameras come and go; keep memory bounded
            known = self._slots[slot] = []
        # A copy: the frame's stacked thumbnails would otherwise stay alive with the reference.
        reference = thumb.copy()
        response = grid_shift_response(picture, crop_bgr.shape, reference) if self.shake else None
        keyed = KeyedPicture(reference, response, key)
        known.insert(0, keyed)
        del known[self.references :]
        return key, keyed

    def _find(self, known: list[KeyedPicture], thumb: np.ndarray) -> KeyedPicture | None:
        """The reference whose picture this is (as it is, else moved or brighter), the last one matched first."""
        for i, ref in enumerate(known):
            if self._matches(ref, thumb, plain=i > 0):  # the caller tried the last one as it is
                if i:
                    known.insert(0, known.pop(i))
                return ref
        return None

    def _matches(self, ref: KeyedPicture, thumb: np.ndarray, plain: bool = True) -> bool:
        if plain and same(ref.thumb, thumb, self.threshold):
            return True
        # A slot a little brighter or off by a pixel stays so for many frames: the thumbnail a fit last accepted is
        # tried as it is before fitting again (a fit costs ~7 us, a plain test ~2). Fits are always against the
        # keyed thumbnail itself, so what is accepted can never drift further from it than one fit allows plus
        # the plain threshold.
        if ref.fitted is not None and same(ref.fitted, thumb, self.threshold):
            return True
        if ref.response is not None and moved(ref.thumb, ref.response, thumb, self.threshold):
            ref.fitted = thumb.copy()
            return True
        return False


class KeyedPicture:
    """A picture a slot's key was computed from, as the memo keeps it; handed out with the key."""

    __slots__ = ("edge_share", "fitted", "key", "response", "thumb")

    def __init__(self, thumb: np.ndarray, response: ShiftResponse | None, key: PerceptualKey) -> None:
        self.thumb = thumb  # the memo thumbnail of the crop `key` was computed from
        self.response = response  # its response to a move and a gain (memo_shift.py)
        self.key = key
        self.fitted: np.ndarray | None = None  # the last thumbnail a fit against `thumb` accepted
        # The slot-state edge share of this picture, set with the key when shelf state is on (prepare.py): the edge
        # share is the costly cue, and while the key is reused the slot still shows this picture (slotstate.py).
        self.edge_share: float | None = None
