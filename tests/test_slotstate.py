"""Slot cues and states: the frame-level paths (stacked thumbnails, carried edge shares) give what the per-slot
definitions give, and the classifier's rules hold for a frame's slots."""

from __future__ import annotations

import cv2
import numpy as np
from conftest import jpeg

from shelfsense.recognition.decode import decode_frame
from shelfsense.recognition.hashing import Hasher
from shelfsense.recognition.keymemo import KeyMemo
from shelfsense.recognition.pictures import PICTURE, picture_box, picture_reduction, slot_pictures
from shelfsense.recognition.slotstate import (
    THUMB,
    SlotLook,
    SlotState,
    SlotStateClassifier,
    StateRules,
    crop_edge_share,
    look_of,
    looks_of,
)
from tests.shelfframes import back, product

FOOTAGE_BOXES = [(36 + 144 * c, 35 + 221 * r, 136, 186) for r in range(2) for c in range(4)]


def textured_frame(seed: int) -> np.ndarray:
    """A 640x480 frame with texture at every scale: noise, blurred noise and flat patches."""
    rng = np.random.default_rng(seed)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 2.5)
    frame[::3] = rng.integers(0, 256, (160, 640, 3), dtype=np.uint8)
    frame[200:300, 100:400] = (90, 120, 150)
    return frame


def crops_of(frame: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    return [frame[y : y + h, x : x + w] for x, y, w, h in boxes]


def test_a_frames_looks_equal_each_slot_looked_at_alone_and_carried_shares_are_used_as_given() -> None:
    crops = crops_of(textured_frame(4), FOOTAGE_BOXES)
    greys = slot_pictures(crops).cue_greys
    carried = [None, 0.5, None, 0.25, None, None, None, 0.0]
    looks = looks_of(crops, greys, carried)
    for crop, look, edges in zip(crops, looks, carried, strict=True):
        alone = look_of(crop)
        assert look.thumb.shape == (THUMB[1], THUMB[0])
        assert np.array_equal(look.thumb, alone.thumb)  # bit for bit, so that no state can differ
        assert look.edges == (alone.edges if edges is None else edges)
        assert alone.edges == crop_edge_share(crop)
    # Divided by its mean: a slot twice as bright in the same design has the same thumbnail, to rounding.
    brighter = look_of(cv2.convertScaleAbs(crops[0], alpha=1.3))
    assert np.abs(brighter.thumb - looks[0].thumb).mean() < 3.0


def test_the_key_memo_hands_out_one_keyed_picture_while_it_reuses_a_key_and_its_edge_share_with_it() -> None:
    memo = KeyMemo(Hasher(), threshold=3.0)
    shelf = back()
    facing = shelf[35:221, 36:172].copy()
    facing[20:160, 10:120] = cv2.resize(product("red"), (110, 140))
    key, keyed = memo.key_and_reference(("c", 0), facing)
    assert keyed is not None and keyed.key == key and keyed.edge_share is None
    keyed.edge_share = look_of(facing).edges  # what the recognizer does the first time the share is needed
    assert keyed.edge_share > 0.1
    noisy = np.clip(facing.astype(np.int16) + 1, 0, 255).astype(np.uint8)
    again_key, again = memo.key_and_reference(("c", 0), noisy)
    assert again_key is key and again is keyed and again.edge_share == keyed.edge_share
    # The facing emptied: a new key and a new keyed picture, whose share is computed from the picture itself.
    emptied = shelf[35:221, 36:172]
    new_key, new = memo.key_and_reference(("c", 0), emptied)
    assert new is not keyed and new_key != key and new is not None and new.edge_share is None
    assert look_of(emptied).edges < 0.1
    assert KeyMemo(Hasher(), threshold=0).key_and_reference(("c", 0), facing) == (key, None)


def flat(level: float) -> np.ndarray:
    return np.full((THUMB[1], THUMB[0]), level, np.float32)


def with_arm(thumb: np.ndarray) -> np.ndarray:
    arm = thumb.copy()
    arm[:, :4] = 10.0  # a quarter of the slot, far darker
    return arm


PRODUCT, EMPTY = 0.5, 0.0  # edge shares


def states(
    classifier: SlotStateClassifier, thumbs: list[np.ndarray], edges: list[float], scores: list[float]
) -> list[SlotState]:
    looks = [SlotLook(t, e) for t, e in zip(thumbs, edges, strict=True)]
    return classifier.classify("cam", looks, scores)


def test_states_of_slots_judged_together() -> None:
    c = SlotStateClassifier(StateRules())
    shelf = [flat(100.0 + 10 * i) for i in range(6)]
    edges = [PRODUCT] * 5 + [EMPTY]
    scores = [0.9, 0.9, 0.9, 0.9, 0.1, 0.9]
    first = states(c, shelf, edges, scores)
    assert first == [SlotState.PRODUCT] * 4 + [SlotState.UNKNOWN, SlotState.EMPTY]
    # An arm moves into slot 0: occluded. Slot 5 shows its learned empty look: empty, whatever its edge share.
    now = [with_arm(shelf[0]), *shelf[1:]]
    assert states(c, now, [PRODUCT] * 6, scores) == [SlotState.OCCLUDED, *first[1:5], SlotState.EMPTY]
    # The arm leaves: slot 0 moved again, but to its last still look, so it is no occluder.
    assert states(c, shelf, edges, scores) == first
    # An arm that comes to rest is what the slot shows from its second frame on.
    assert states(c, now, edges, scores)[0] == SlotState.OCCLUDED
    assert states(c, now, edges, scores)[0] == SlotState.PRODUCT


def test_most_slots_changing_at_once_is_the_camera() -> None:
    c = SlotStateClassifier(StateRules())
    shelf = [flat(100.0 + 10 * i) for i in range(8)]
    states(c, shelf, [PRODUCT] * 8, [0.9] * 8)
    blocked = [with_arm(t) for t in shelf[:6]] + shelf[6:]
    assert states(c, blocked, [EMPTY] * 8, [0.9] * 8) == [SlotState.OCCLUDED] * 8
    # Nothing was learned from it: the shelf as before is no motion from the last still looks.
    assert states(c, shelf, [PRODUCT] * 8, [0.9] * 8) == [SlotState.PRODUCT] * 8


def test_a_camera_with_another_slot_count_starts_over() -> None:
    c = SlotStateClassifier(StateRules())
    states(c, [flat(100.0)] * 3, [PRODUCT] * 3, [0.9] * 3)
    assert states(c, [with_arm(flat(100.0))] * 2, [PRODUCT] * 2, [0.9] * 2) == [SlotState.PRODUCT] * 2
    assert c.classify("cam", [], []) == []


def test_pictures_are_made_at_the_largest_reduction_that_keeps_every_slot_pictured_whole() -> None:
    pw, ph = PICTURE
    assert picture_reduction(FOOTAGE_BOXES) == 4  # 136x186 slots: 34x46 at a quarter, 17x23 at an eighth
    assert picture_reduction([(0, 0, 2 * pw - 1, 8 * ph)]) == 1  # too narrow to picture at half size
    assert picture_reduction([(0, 0, 8 * pw, 8 * ph)]) == 8
    assert picture_reduction([(0, 0, 8 * pw, 8 * ph), (0, 0, 4 * pw + 3, 4 * ph)]) == 4  # the smallest slot decides
    frame = textured_frame(3)
    reduce = picture_reduction(FOOTAGE_BOXES)
    small = decode_frame(jpeg(frame, 92), None, reduce)
    assert small.shape == (480 // reduce, 640 // reduce, 3)
    for box in FOOTAGE_BOXES:  # every reduced slot covers its full-size slot's pixels, to within a reduced pixel
        x, y, w, h = picture_box(box, reduce)
        assert abs(reduce * x - box[0]) < reduce and abs(reduce * (x + w) - (box[0] + box[2])) < reduce
        assert abs(reduce * y - box[1]) < reduce and abs(reduce * (y + h) - (box[1] + box[3])) < reduce
    # The reduced picture is the full-size one within a few grey levels: the memo and cue thresholds still apply.
    full = slot_pictures(crops_of(frame, FOOTAGE_BOXES)).memo_thumbs.astype(np.int16)
    boxes = [picture_box(b, reduce) for b in FOOTAGE_BOXES]
    reduced = slot_pictures([small[y : y + h, x : x + w] for x, y, w, h in boxes]).memo_thumbs.astype(np.int16)
    assert float(np.abs(reduced - full).mean()) < 3.0
