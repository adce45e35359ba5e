"""The prepare step of a frame: decode -> slots -> pictures -> keys -> looks, one call a frame.

With the cache on, a frame is first decoded at its picture reduction (pictures.picture_reduction): the slots'
pictures decide which keys the memo reuses (keymemo.py), and only when a slot needs a new key is the frame decoded
whole, its keys computed from the full-size crops. A fixed camera's frames mostly keep every key; their crops are
then cut only if a lookup misses, an answer is undecided or a confirmation is due (SlotCrops, the recognizer). The
recognizer runs `prepare` on the event loop or on its prep threads (Recognizer._prepared).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

import numpy as np

from shelfsense.config import CameraConfig
from shelfsense.recognition.decode import FrameHeader, decode_frame, frame_boxes
from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.keymemo import KeyMemo
from shelfsense.recognition.pictures import picture_box, picture_reduction, slot_pictures
from shelfsense.recognition.slots import crop
from shelfsense.recognition.slotstate import SlotLook, crop_edge_share, looks_of
from shelfsense.types import Box

__all__ = ["FramePreparer", "Prepared", "SlotCrops", "whole_crops"]


class Prepared(NamedTuple):
    header: FrameHeader
    boxes: tuple[Box, ...]
    crops: list[np.ndarray] | None  # None: decoded at its picture reduction only (SlotCrops decodes it whole)
    keys: list[PerceptualKey] | None  # None when the cache is off
    looks: list[SlotLook] | None  # None when shelf state is off
    decode_ms: float
    hash_ms: float


class FramePreparer:
    """Decodes, cuts, pictures and keys a frame; `keys` is None when the cache is off, `shelf` asks for looks."""

    def __init__(self, keys: KeyMemo | None, shelf: bool) -> None:
        self.keys = keys
        self.shelf = shelf

    def prepare(self, camera: CameraConfig, image: bytes, header: FrameHeader) -> Prepared:
        """Decode, cut into slots and key them, in one call (hashing holds the GIL: no gain in splitting)."""
        t0 = time.perf_counter()
        boxes = frame_boxes(camera, header.width, header.height)
        memo = self.keys
        if memo is None:  # cache off: every slot is inferred, so the frame is decoded whole
            crops = whole_crops(image, header, boxes)
            decoded = time.perf_counter() - t0
            looks = looks_of(crops, slot_pictures(crops).cue_greys, [None] * len(crops)) if self.shelf else None
            return Prepared(header, boxes, crops, None, looks, decoded * 1000.0, _ms(t0) - decoded * 1000.0)
        # Slots too small to picture at a reduced size, or no memo to reuse keys: the frame is decoded whole once.
        reduce = picture_reduction(boxes) if memo.threshold > 0 else 1
        frame = decode_frame(image, header, reduce)
        decoded = time.perf_counter() - t0
        crops = [crop(frame, box) for box in boxes] if reduce == 1 else None
        pictures = slot_pictures(crops or [crop(frame, picture_box(box, reduce)) for box in boxes])
        found = [memo.reused((camera.id, i), thumb) for i, thumb in enumerate(pictures.memo_thumbs)]
        if crops is None and None in found:
            t1 = time.perf_counter()
            crops = whole_crops(image, header, boxes)
            decoded += time.perf_counter() - t1
        for i, known in enumerate(found):
            if known is None:
                assert crops is not None
                found[i] = known = memo.computed(
                    (camera.id, i), crops[i], pictures.memo_thumbs[i], pictures.pictures[i]
                )
                if known[1] is not None and self.shelf:
                    # The edge share is computed from the crop a key is computed from and reused with that key, so
                    # it never drifts further from the slot's picture than the key does (docs/shelf.md).
                    known[1].edge_share = crop_edge_share(crops[i])
        keys = [known[0] for known in found]  # type: ignore[index]  # every None was replaced above
        looks = None
        if self.shelf:
            edges = [known[1].edge_share if known[1] is not None else None for known in found]  # type: ignore[index]
            looks = looks_of(crops or [None] * len(boxes), pictures.cue_greys, edges)
        return Prepared(header, boxes, crops, keys, looks, decoded * 1000.0, _ms(t0) - decoded * 1000.0)


def whole_crops(image: bytes, header: FrameHeader, boxes: tuple[Box, ...]) -> list[np.ndarray]:
    """The slots' crops from the frame decoded whole: views, which keys and cues read in place; the confirmer copies
    what outlives the frame."""
    frame = decode_frame(image, header)
    return [crop(frame, box) for box in boxes]


class SlotCrops:
    """A frame's slot crops for the slots that need pixels: as prepared, or decoded whole once, when first asked."""

    __slots__ = ("_crops", "_decode", "_task")

    def __init__(
        self, crops: list[np.ndarray] | None, decode: Callable[[], Coroutine[Any, Any, list[np.ndarray]]]
    ) -> None:
        self._crops = crops
        self._decode = decode
        self._task: asyncio.Task[list[np.ndarray]] | None = None

    async def get(self) -> list[np.ndarray]:
        if self._crops is not None:
            return self._crops
        if self._task is None:
            self._task = asyncio.ensure_future(self._decode())
        return await self._task


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
