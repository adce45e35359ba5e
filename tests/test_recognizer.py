"""The recognition core end to end: real frames, real MobileNetV2 inference, real diskcache on disk."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import colour_config, grocery_photos, jpeg, tile

from shelfsense.errors import BadImageError, UnknownCameraError
from shelfsense.recognition.decode import decode_frame
from shelfsense.recognition.recognizer import Recognizer


def _photos(grocery_dir: Path, n: int, offset: int = 0) -> list[np.ndarray]:
    """n photos of n different fine classes, picked by rule: the first photo of each class in val order."""
    seen, crops = set(), []
    for path, label in grocery_photos(grocery_dir, "val"):
        if label not in seen:
            seen.add(label)
            crops.append(cv2.imread(str(path)))
    return crops[offset : offset + n]


def _perturb(frame: np.ndarray, seed: int) -> bytes:
    """What the same camera sends a moment later: 1 px shake, +6 % light, sensor noise, another JPEG quality."""
    rng = np.random.default_rng(seed)
    shifted = np.roll(frame, (1, 1), axis=(0, 1))
    lit = shifted.astype(np.float32) * 1.06 + rng.normal(0, 3, frame.shape)
    return jpeg(np.clip(lit, 0, 255).astype(np.uint8), quality=int(rng.integers(70, 90)))


@pytest.mark.pi
async def test_same_shelf_again_hits_memory_and_other_products_miss(make_config, grocery_dir: Path) -> None:
    r = await Recognizer.create(make_config(cache={"confirm_inferences": 1}))  # counting slot inferences only
    try:
        frame = tile(_photos(grocery_dir, 8), 2, 4)
        first = await r.recognize("shelf", jpeg(frame, 92))
        assert [s.cache for s in first.slots] == ["miss"] * 8
        assert r.pool.invokes == 8
        for seed in range(3):
            again = await r.recognize("shelf", _perturb(frame, seed))
            assert [s.cache for s in again.slots] == ["memory"] * 8, [s.distance for s in again.slots]
            assert [s.label for s in again.slots] == [s.label for s in first.slots]
            assert all(0 <= s.distance <= r.config.cache.max_distance for s in again.slots)
        assert r.pool.invokes == 8
        other = await r.recognize("shelf", jpeg(tile(_photos(grocery_dir, 8, offset=8), 2, 4)))
        assert [s.cache for s in other.slots] == ["miss"] * 8
        assert r.pool.invokes == 16
    finally:
        await r.close()


def _carton(bgr: tuple[int, int, int]) -> np.ndarray:
    img = np.full((240, 160, 3), 235, np.uint8)
    cv2.rectangle(img, (20, 30), (140, 220), bgr, -1)
    cv2.putText(img, "MILK", (35, 120), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    cv2.circle(img, (80, 180), 20, (255, 255, 255), -1)
    return img


async def test_colour_only_difference_is_not_a_hit(own_config) -> None:
    """The same carton in red and in blue: near-equal luminance hash, different product."""
    r = await Recognizer.create(own_config())
    try:
        red, blue = _carton((40, 40, 200)), _carton((200, 40, 40))
        a = await r.recognize("one", jpeg(red))
        b = await r.recognize("one", jpeg(blue))
        assert (a.slots[0].cache, b.slots[0].cache) == ("miss", "miss")
        assert (r.hasher.key(red).bits ^ r.hasher.key(blue).bits).bit_count() <= r.config.cache.max_distance
        c = await r.recognize("one", jpeg(red, 75))
        assert c.slots[0].cache == "memory"
    finally:
        await r.close()


@pytest.mark.pi
async def test_restart_hits_from_disk(make_config, grocery_dir: Path) -> None:
    config = make_config()
    frame = tile(_photos(grocery_dir, 8, offset=20), 2, 4)
    r = await Recognizer.create(config)
    first = await r.recognize("shelf", jpeg(frame))
    await r.close()
    r = await Recognizer.create(config)  # a new process would see just this: the files under disk_path
    try:
        assert r.cache.entries_memory == 0 and r.cache.entries_disk == 8
        again = await r.recognize("shelf", _perturb(frame, 7))
        assert [s.cache for s in again.slots] == ["disk"] * 8
        assert [s.label for s in again.slots] == [s.label for s in first.slots]
        assert r.pool.invokes == 0
        promoted = await r.recognize("shelf", _perturb(frame, 8))
        assert [s.cache for s in promoted.slots] == ["memory"] * 8
    finally:
        await r.close()


async def test_changing_the_model_file_invalidates(make_config, mobilenet_v2: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    shutil.copyfile(mobilenet_v2, model)
    config = make_config(model={"path": str(model)})
    image = jpeg(cv2.imread(str(mobilenet_v2.parents[1] / "images" / "hot_dog.jpg")))
    for expected in ("miss", "disk"):
        r = await Recognizer.create(config)
        assert (await r.recognize("one", image)).slots[0].cache == expected
        await r.close()
    with model.open("ab") as fh:  # a new model file (new SHA-256), same answers: still must not reuse
        fh.write(b"retrained")
    r = await Recognizer.create(config)
    try:
        assert r.cache.entries_disk == 0
        assert (await r.recognize("one", image)).slots[0].cache == "miss"
    finally:
        await r.close()


@pytest.mark.pi
async def test_eight_concurrent_identical_misses_run_one_inference(make_config, shared_dir: Path) -> None:
    r = await Recognizer.create(make_config())
    try:
        image = jpeg(cv2.imread(str(shared_dir / "images" / "missvickie_potato_chips.bmp")))
        results = await asyncio.gather(*(r.recognize("one", image) for _ in range(8)))
        tiers = [res.slots[0].cache for res in results]
        assert r.pool.invokes == 1
        assert tiers.count("miss") == 1 and "coalesced" in tiers
        # frames whose decoding finished after the one inference did are plain memory hits
        assert set(tiers) <= {"miss", "coalesced", "memory"}
        assert {res.slots[0].label for res in results} == {"packet"}
    finally:
        await r.close()


async def test_same_product_in_every_slot_is_inferred_once(make_config, shared_dir: Path) -> None:
    r = await Recognizer.create(make_config())
    try:
        chips = cv2.imread(str(shared_dir / "images" / "missvickie_potato_chips.bmp"))
        res = await r.recognize("shelf", jpeg(tile([chips] * 8, 2, 4)))
        assert r.pool.invokes == 1
        assert sorted(s.cache for s in res.slots) == ["coalesced"] * 7 + ["miss"]
    finally:
        await r.close()


async def test_cache_disabled_infers_every_slot(make_config, shared_dir: Path) -> None:
    r = await Recognizer.create(make_config(cache={"enabled": False}))
    try:
        image = jpeg(tile([cv2.imread(str(shared_dir / "images" / "hot_dog.jpg"))] * 8, 2, 4))
        for _ in range(2):
            res = await r.recognize("shelf", image)
            assert [s.cache for s in res.slots] == ["miss"] * 8
        assert r.pool.invokes == 16 and r.cache is None
    finally:
        await r.close()


async def test_memory_tier_is_bounded_lru(make_config, grocery_dir: Path) -> None:
    r = await Recognizer.create(make_config(cache={"memory_entries": 4, "disk_path": ""}))
    try:
        photos = _photos(grocery_dir, 6, offset=30)
        for p in photos:
            await r.recognize("one", jpeg(p))
        assert r.cache.entries_memory == 4 and r.cache.disk is None
        assert (await r.recognize("one", jpeg(photos[-1]))).slots[0].cache == "memory"
        assert (await r.recognize("one", jpeg(photos[0]))).slots[0].cache == "miss"  # evicted, no disk
    finally:
        await r.close()


async def test_corrupt_disk_cache_degrades_to_memory(make_config, tmp_path: Path, caplog, shared_dir: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "cache.db").write_bytes(b"\x00garbage, not sqlite" * 100)
    with caplog.at_level(logging.WARNING, logger="shelfsense.recognition.disk"):
        r = await Recognizer.create(make_config())
    try:
        assert not r.cache.disk.available and "open failed" in r.cache.disk.error
        assert any("memory cache only" in rec.message for rec in caplog.records)
        image = jpeg(cv2.imread(str(shared_dir / "images" / "hot_dog.jpg")))
        assert (await r.recognize("one", image)).slots[0].cache == "miss"
        assert (await r.recognize("one", image)).slots[0].cache == "memory"
    finally:
        await r.close()


async def test_unwritable_disk_cache_degrades_to_memory(own_config, tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    r = await Recognizer.create(own_config(cache={"disk_path": str(blocker / "cache")}))
    try:
        assert not r.cache.disk.available
        assert r.cache.entries_disk == 0
    finally:
        await r.close()
    r = await Recognizer.create(own_config(cache={"disk_path": str(blocker)}))
    try:
        assert r.cache.disk.error == (
            f"open failed: NotADirectoryError: cache.disk_path {blocker} is a file, not a folder"
        )
    finally:
        await r.close()
    # sysfs refuses new folders even to root, so this is a permission failure wherever the tests run as.
    denied = Path("/sys/shelfsense-cache-test")
    r = await Recognizer.create(own_config(cache={"disk_path": str(denied)}))
    try:
        assert not r.cache.disk.available and "PermissionError" in r.cache.disk.error
        assert f"(can this user create and write files in {denied}?)" in r.cache.disk.error
    finally:
        await r.close()


async def test_bad_frames_and_unknown_camera(own_config) -> None:
    r = await Recognizer.create(own_config())
    try:
        with pytest.raises(BadImageError, match="empty"):
            await r.recognize("one", b"")
        with pytest.raises(BadImageError, match="not a decodable"):
            await r.recognize("one", b"\xff\xd8\xff\xe0 truncated jpeg")
        with pytest.raises(UnknownCameraError, match="'nope' is not configured"):
            await r.recognize("nope", jpeg(_carton((0, 0, 255))))
        box = [[0, 0, 300, 300]]
        small = own_config(cameras={"s": {"slots": box}, "sized": {"slots": box, "width": 640, "height": 480}})
        r2 = await Recognizer.create(small)
        with pytest.raises(BadImageError, match="slot 0") as exc:
            await r2.recognize("s", jpeg(_carton((0, 0, 255))))
        assert "configured for" not in str(exc.value)  # no frame size declared, none to name
        # A camera sending another size than the one declared is told which size its slots expect.
        with pytest.raises(BadImageError, match=r"outside its 160x240 frame \(its slots are configured for 640x480"):
            await r2.recognize("sized", jpeg(_carton((0, 0, 255))))
        await r2.close()
    finally:
        await r.close()


async def test_frame_result_breakdown(make_config, shared_dir: Path) -> None:
    r = await Recognizer.create(make_config())
    try:
        res = await r.recognize("shelf", jpeg(tile([cv2.imread(str(shared_dir / "images" / "cat.bmp"))] * 8, 2, 4)))
        t = res.timings()
        assert set(t) == {"decode", "hash", "lookup", "inference", "total"}
        assert t["inference"] > 0 and t["decode"] > 0 and t["total"] >= t["decode"]
        assert (res.width, res.height) == (640, 480)
        assert [s.box for s in res.slots][:2] == [(0, 0, 160, 240), (160, 0, 160, 240)]
    finally:
        await r.close()


async def test_empty_shelf_back_hits_despite_noise_and_other_colours_miss(own_config) -> None:
    """A textureless slot (product taken) has no picture to hash: its key is its colour, stable under noise."""
    # every frame hashed afresh; slot inferences only
    r = await Recognizer.create(own_config(cache={"key_reuse_threshold": 0.0, "confirm_inferences": 1}))
    rng = np.random.default_rng(3)

    def empty_slot(bgr: tuple[int, int, int]) -> bytes:
        back = np.full((240, 160, 3), bgr, np.float32) + rng.normal(0, 3, (240, 160, 3))
        return jpeg(np.clip(back, 0, 255).astype(np.uint8), int(rng.integers(70, 90)))

    try:
        tiers = [(await r.recognize("one", empty_slot((60, 70, 80)))).slots[0].cache for _ in range(6)]
        assert tiers == ["miss"] + ["memory"] * 5
        assert (await r.recognize("one", empty_slot((40, 160, 200)))).slots[0].cache == "miss"  # another colour
        assert r.pool.invokes == 2
    finally:
        await r.close()


async def test_unchanged_slots_reuse_their_key_and_a_swapped_product_does_not(make_config, grocery_dir: Path) -> None:
    r = await Recognizer.create(make_config(cache={"confirm_inferences": 1}))
    try:
        photos = _photos(grocery_dir, 9, offset=40)
        frame = tile(photos[:8], 2, 4)
        await r.recognize("shelf", jpeg(frame, 90))
        rng = np.random.default_rng(1)
        noisy = np.clip(frame + rng.normal(0, 1.5, frame.shape), 0, 255).astype(np.uint8)
        again = await r.recognize("shelf", jpeg(noisy, 85))
        assert [(s.cache, s.distance) for s in again.slots] == [("memory", 0)] * 8  # the same keys, reused
        swapped = tile(photos[:3] + [photos[8]] + photos[4:8], 2, 4)  # a restock: slot 3 holds another product
        result = await r.recognize("shelf", jpeg(swapped, 85))
        assert [s.cache for s in result.slots] == ["memory"] * 3 + ["miss"] + ["memory"] * 4
        assert r.pool.invokes == 9
        # The 160x240 slots are pictured from a half-size decode; the miss is still inferred on its full-size crop.
        x, y, w, h = result.slots[3].box
        full, _ = await r.pool.classify(np.ascontiguousarray(decode_frame(jpeg(swapped, 85))[y : y + h, x : x + w]))
        assert result.slots[3].top_k == full
    finally:
        await r.close()


def _purple(red: int, blue: int) -> np.ndarray:
    """A carton the colour fixture model reads as red or blue by a few grey levels: one product to the cache."""
    img = np.full((120, 90, 3), (blue, 60, red), np.uint8)
    cv2.putText(img, "SHELF", (5, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    cv2.rectangle(img, (10, 70), (80, 110), (20, 20, 20), 3)
    return img


@pytest.mark.parametrize("scale", [1, 3])
@pytest.mark.parametrize(("confirm", "settled"), [(1, "red"), (3, "blue")])
async def test_an_unlucky_first_answer_is_outvoted_by_confirmations(
    tmp_path: Path, confirm: int, settled: str, scale: int
) -> None:
    """First frame read as red (0.58); the same facing in the next frames reads blue (0.70). A cache that keeps
    its first sample says red forever; averaging three inferences (after 2 and 4 more hits) says blue, as fresh
    inference mostly does. At scale 3 the all-hit frames are decoded at half size only (pictures.picture_reduction)
    and a confirmation due on one decodes its full-size crop."""
    config = colour_config(tmp_path, {"one": {}}).replace(cache={"confirm_inferences": confirm})
    r = await Recognizer.create(config)

    def picture(red: int, blue: int) -> np.ndarray:
        return cv2.resize(_purple(red, blue), None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)

    def carton(red: int, blue: int) -> bytes:
        return jpeg(picture(red, blue), 95)

    try:
        first = await r.recognize("one", carton(196, 192))
        assert (first.slots[0].cache, first.slots[0].label) == ("miss", "red")
        for _ in range(12):  # confirmations after 2, then 4 more hits; then nothing until re-verification
            res = await r.recognize("one", carton(188, 200))
            assert res.slots[0].cache == "memory"
            await r.settle()
        assert res.slots[0].label == settled
        assert r.pool.invokes == confirm  # one miss, then confirmations until `confirm` inferences, no more
        assert r.confirmations == confirm - 1
        hit = r.cache.lookup_memory(r.hasher.key(picture(196, 192)))
        assert hit is not None and hit.inferences == confirm and hit.prediction[0][0] == settled
    finally:
        await r.close()


async def test_confirmations_sample_every_facing_of_a_product_not_the_last_one(tmp_path: Path) -> None:
    """Four facings of one carton share a cached answer. Three read blue (0.55), the last, in glare, reads red
    (0.77). Hits grow by four a frame, so a confirmation always falls due on the same facing; averaging that one
    facing's crop again and again would make every facing red. The answer must follow the facings' majority."""
    config = colour_config(tmp_path, {"row": {"grid": {"rows": 1, "cols": 4}}}).replace(cache={"confirm_inferences": 3})
    frame = jpeg(np.hstack([_purple(192, 194)] * 3 + [_purple(200, 186)]), 95)
    r = await Recognizer.create(config)
    try:
        first = await r.recognize("row", frame)
        assert [s.label for s in first.slots] == ["blue"] * 4  # slot 0's inference, shared by its facings
        for _ in range(6):
            res = await r.recognize("row", frame)
            await r.settle()
        assert [s.cache for s in res.slots] == ["memory"] * 4
        assert r.confirmations == 2  # the answer now averages 3 inferences, and stays
        assert [s.label for s in res.slots] == ["blue"] * 4
    finally:
        await r.close()


@pytest.mark.parametrize(("margin", "served"), [(0.3, "miss"), (0.0, "memory")])
async def test_an_answer_still_undecided_after_its_confirmations_is_inferred_fresh(
    tmp_path: Path, margin: float, served: str
) -> None:
    """A carton the model reads red 0.5 / blue 0.5 beside a green tin it is sure of and a bare shelf. Once its three
    samples are in, the undecided carton's slot is inferred every frame (as with no cache) and each sample is
    averaged in, instead of one coin toss being served to it for the answer's lifetime. The decided tin and the
    empty slot (no texture, no product to decide) are still served from memory; margin 0 turns the rule off."""
    config = colour_config(tmp_path, {"row": {"grid": {"rows": 1, "cols": 3}}}).replace(
        cache={"confirm_inferences": 3, "undecided_margin": margin}
    )
    bare = np.full((120, 90, 3), 128, np.uint8)
    tin = np.full((120, 90, 3), (40, 200, 40), np.uint8)
    cv2.circle(tin, (45, 60), 30, (255, 255, 255), 4)
    frame = jpeg(np.hstack([_purple(193, 193), tin, bare]), 95)
    r = await Recognizer.create(config)
    try:
        for _ in range(8):  # the first miss, then confirmations after 2 and 4 hits
            await r.recognize("row", frame)
            await r.settle()
        hit = r.cache.lookup_memory(r.hasher.key(cv2.imdecode(np.frombuffer(jpeg(_purple(193, 193), 95), np.uint8), 1)))
        assert hit is not None and hit.inferences >= 3
        invokes, inferences = r.pool.invokes, hit.inferences
        for _ in range(3):
            res = await r.recognize("row", frame)
            await r.settle()
        assert [s.cache for s in res.slots] == [served, "memory", "memory"]
        assert r.pool.invokes - invokes == (3 if served == "miss" else 0)  # one fresh inference a frame
        again = r.cache.lookup_memory(
            r.hasher.key(cv2.imdecode(np.frombuffer(jpeg(_purple(193, 193), 95), np.uint8), 1))
        )
        assert again is not None and again.inferences == inferences + (3 if served == "miss" else 0)
    finally:
        await r.close()


async def test_a_frame_alone_is_prepared_on_the_loop_and_overlapping_or_large_ones_on_the_threads(
    tmp_path: Path,
) -> None:
    """The hit path's shortcut (no thread hop for a frame alone) must not take decoding off the threads when frames
    overlap, nor stall the loop on a frame larger than INLINE_MAX_PIXELS."""
    import threading

    from shelfsense.recognition.recognizer import INLINE_MAX_PIXELS

    config = colour_config(tmp_path, {"one": {"grid": {"rows": 1, "cols": 2}}})
    r = await Recognizer.create(config)
    where: list[str] = []
    prepare = r._decode_and_key

    def recording(*args):  # noqa: ANN002, ANN202  # a spy with the wrapped method's signature
        where.append(threading.current_thread().name)
        return prepare(*args)

    r._decode_and_key = recording
    small = jpeg(np.hstack([_purple(200, 40), _purple(40, 200)]), 95)
    try:
        alone = await r.recognize("one", small)
        assert where == [threading.current_thread().name] and len(alone.slots) == 2
        where.clear()
        # All-hit frames never await, so they never overlap; a frame that misses waits on inference, and the
        # frames arriving meanwhile are prepared on the threads.
        new = jpeg(np.hstack([_purple(40, 40), _purple(220, 220)]), 95)
        await asyncio.gather(r.recognize("one", new), *(r.recognize("one", small) for _ in range(2)))
        assert where[0] == threading.current_thread().name  # the first starts alone
        assert all(name.startswith("shelfsense-prep") for name in where[1:]) and len(where) == 3
        where.clear()
        side = int(INLINE_MAX_PIXELS**0.5) + 8
        await r.recognize("one", jpeg(cv2.resize(_purple(200, 40), (side, side)), 90))
        assert where and where[0].startswith("shelfsense-prep")
    finally:
        await r.close()
