"""What a slot shows in one frame: a product, the empty shelf, something passing in front, or an unsure product.

The model only knows products, so an empty facing or a shopper's arm comes back as "some product, low score".
The state is decided from the picture instead, with cues that hold on shelves this project has never seen:

* **occluded**: the slot moved since the previous frame *and* does not look like its last still appearance. A
  shelf is still; what moves in front of it is a hand, an arm, a trolley. The first frame after an arm leaves
  moved too, but it matches the slot's last still look again, so it is not occluded.
* **empty**: the slot looks like its learned empty appearance (the picture it had when last seen empty and still),
  or it has almost no texture. Printed packaging and produce are full of edges; the back panel of a shelf is not.
  The edge threshold was chosen on real product photos, not on a rendered background (docs/shelf.md).
* **unknown**: a product whose top score is under `shelf.unknown_below`: the facing holds something, the model
  is not sure what.
* **product**: the rest.

Appearances are compared as small grey thumbnails divided by their own mean brightness, so a slow exposure drift or
a light switched on does not read as motion. The classifier keeps three thumbnails per camera and slot (previous,
last still, learned empty); it is fed from the event loop, one frame of a camera after the other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from shelfsense.config import Config
from shelfsense.recognition.pictures import CUE_THUMB, slot_pictures

__all__ = [
    "SlotLook",
    "SlotState",
    "SlotStateClassifier",
    "StateRules",
    "crop_edge_share",
    "edge_share",
    "look_of",
    "looks_of",
]

THUMB = CUE_THUMB  # w, h of the comparison thumbnail: coarse enough that JPEG noise and a pixel of shake average out
EDGE_WIDTH = 64  # crops are shrunk by a whole factor to 64-127 px wide first, so slot size barely moves the figure
EDGE_LEVEL = 10  # grey levels per pixel (|dx| + |dy| of the 3x3-blurred image) that count as an edge
DIFF_LEVEL = 32.0  # a thumbnail pixel differing by more than this (of ~128 mean) counts as changed


class SlotState(StrEnum):
    PRODUCT = "product"
    EMPTY = "empty"
    OCCLUDED = "occluded"
    UNKNOWN = "unknown"

    @property
    def occupied(self) -> bool:
        """Something stands in the facing (a product, sure or not)."""
        return self in (SlotState.PRODUCT, SlotState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class SlotLook:
    """The cues of one slot crop, computed off the event loop with the crop."""

    thumb: np.ndarray  # float32 THUMB grey, divided by its mean and times 128
    edges: float  # share of pixels on an edge, 0..1


@dataclass(frozen=True, kw_only=True)
class StateRules:
    unknown_below: float = 0.3  # top score under which a product is `unknown`
    empty_edges: float = 0.1  # edge share under which a slot is `empty` (real product photos: >= 0.37)
    changed_share: float = 0.04  # share of thumbnail pixels that must change to call it motion / a new look
    blocked_share: float = 0.75  # share of a camera's slots changing at once that marks the whole frame occluded


def look_of(crop_bgr: np.ndarray, edges: float | None = None) -> SlotLook:
    """The cues of one BGR crop: its cue thumbnail (pictures.py) and its edge share (computed unless given)."""
    return looks_of([crop_bgr], slot_pictures([crop_bgr]).cue_greys, [edges])[0]


def looks_of(
    crops: Sequence[np.ndarray | None], cue_greys: np.ndarray, edges: Sequence[float | None]
) -> list[SlotLook]:
    """The slots' looks from their cue thumbnails (pictures.SlotPictures.cue_greys), each thumbnail divided by its
    mean in one go; `edges[i]`, when given, is slot i's edge share from a picture the caller knows to be the same (the
    recognizer's key memo), else it is computed from the crop, which must then be given."""
    n = len(crops)
    thumbs = cue_greys.astype(np.float32)
    means = thumbs.reshape(n, -1).sum(axis=1) / np.float32(THUMB[0] * THUMB[1])
    thumbs *= (128.0 / np.maximum(means.astype(np.float64), 1.0)).astype(np.float32)[:, None, None]
    return [SlotLook(t, _edges(c) if e is None else e) for t, c, e in zip(thumbs, crops, edges, strict=True)]


def _edges(crop_bgr: np.ndarray | None) -> float:
    if crop_bgr is None:
        raise ValueError("a slot without a known edge share needs its crop")
    return crop_edge_share(crop_bgr)


def crop_edge_share(crop_bgr: np.ndarray) -> float:
    """The crop's edge share: grey, shrunk by a whole factor to EDGE_WIDTH-(2*EDGE_WIDTH-1) px wide, then edge_share."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    k = max(1, w // EDGE_WIDTH)
    small = cv2.resize(grey[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    return edge_share(small)


def edge_share(small: np.ndarray) -> float:
    """Share of the shrunk grey picture's pixels on an edge (|dx| + |dy| of its 3x3 blur over EDGE_LEVEL)."""
    blurred = cv2.blur(small, (3, 3))
    # Sobel's 3x3 kernel weighs a step of one level per pixel as 4: |gx| + |gy| > 4 * EDGE_LEVEL.
    gradient = cv2.add(
        cv2.convertScaleAbs(cv2.Sobel(blurred, cv2.CV_16S, 1, 0), alpha=0.25),
        cv2.convertScaleAbs(cv2.Sobel(blurred, cv2.CV_16S, 0, 1), alpha=0.25),
    )
    return float(np.count_nonzero(gradient > EDGE_LEVEL)) / gradient.size


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """Share of thumbnail pixels that differ by more than DIFF_LEVEL."""
    return float(np.count_nonzero(np.abs(a - b) > DIFF_LEVEL)) / a.size


@dataclass(slots=True)
class _Memory:
    previous: np.ndarray | None = None
    still: np.ndarray | None = None  # the last look that had not moved since the frame before
    empty: np.ndarray | None = None  # the last still look judged empty


class SlotStateClassifier:
    """Per-frame slot states from the looks of a camera's slots and their top scores."""

    def __init__(self, rules: StateRules, max_cameras: int = 64) -> None:
        self.rules = rules
        self.max_cameras = max_cameras
        self._memory: OrderedDict[str, list[_Memory]] = OrderedDict()  # per camera, least recently seen first

    @classmethod
    def from_config(cls, config: Config) -> SlotStateClassifier:
        shelf = config.shelf
        rules = StateRules(
            unknown_below=shelf.unknown_below, empty_edges=shelf.empty_edges, changed_share=shelf.changed_share
        )
        # Configured cameras, plus as many unconfigured ones as server.allow_unknown_cameras keeps track of.
        return cls(rules, len(config.cameras) + config.server.max_cameras)

    def classify(self, camera: str, looks: list[SlotLook], scores: list[float]) -> list[SlotState]:
        memories = self._memory.pop(camera, None)
        if memories is None or len(memories) != len(looks):
            memories = [_Memory() for _ in looks]
        self._memory[camera] = memories
        while len(self._memory) > self.max_cameras:  # a stream of made-up camera ids cannot grow memory
            self._memory.popitem(last=False)
        from_still = self._from_still(memories, looks)
        if from_still is not None and len(looks) >= 4:
            moved = sum(share > self.rules.changed_share for share in from_still)
            if moved >= self.rules.blocked_share * len(looks):
                # A shelf changes one facing at a time; most of them changing at once is the camera: a hand on the
                # lens, the lights, the mount knocked. Nothing is learned from such a frame.
                return [SlotState.OCCLUDED] * len(looks)
        shares: list[float | None] = list(from_still) if from_still is not None else [None] * len(looks)
        return [self._one(*slot) for slot in zip(memories, looks, scores, shares, strict=True)]

    @staticmethod
    def _from_still(memories: list[_Memory], looks: list[SlotLook]) -> list[float] | None:
        """Every slot's change from its last still look, once every slot has one."""
        if any(m.still is None for m in memories):
            return None
        return [changed(look.thumb, m.still) for m, look in zip(memories, looks, strict=True)]

    def _one(self, m: _Memory, look: SlotLook, score: float, from_still: float | None) -> SlotState:
        r = self.rules
        if from_still is None and m.still is not None:
            from_still = changed(look.thumb, m.still)
        # After a still frame the previous look is the still one (the same array): one comparison serves both, which
        # halves the comparisons of a quiet shelf (changed() is a pure function of the two thumbnails).
        if m.previous is m.still:
            from_previous = from_still
        else:
            from_previous = changed(look.thumb, m.previous) if m.previous is not None else None
        moving = from_previous is not None and from_previous > r.changed_share
        learned_empty = m.empty is not None and changed(look.thumb, m.empty) <= r.changed_share
        # A look seen still before (the last one, or the slot's empty shelf) is no occluder, even right after motion.
        known = learned_empty or (from_still is not None and from_still <= r.changed_share)
        m.previous = look.thumb
        if moving and not known:
            return SlotState.OCCLUDED
        m.still = look.thumb
        if learned_empty or look.edges < r.empty_edges:
            m.empty = look.thumb
            return SlotState.EMPTY
        return SlotState.UNKNOWN if score < r.unknown_below else SlotState.PRODUCT
