"""The disk tier is bounded by cache.disk_entries: its index and diskcache shrink together, oldest stored first."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import diskcache
import pytest

from shelfsense.recognition import disk as disk_module
from shelfsense.recognition.answer import Answer
from shelfsense.recognition.cache import MemoryTier, ResultCache
from shelfsense.recognition.disk import DiskTier
from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.keystore import COLOUR_BYTES


def same_colour(a: bytes, b: bytes) -> bool:
    return a == b


def keys(n: int, seed: int) -> list[PerceptualKey]:
    rng = random.Random(seed)
    return [PerceptualKey(rng.getrandbits(64), rng.randbytes(COLOUR_BYTES)) for _ in range(n)]


def tier(path: Path, bound: int) -> DiskTier:
    disk = DiskTier(path, 64 * 1024 * 1024, "ns", 8, same_colour, bound)
    disk.open()
    assert disk.available, disk.error
    return disk


def on_disk(path: Path) -> int:
    with diskcache.Cache(str(path)) as raw:
        return len(raw)


def test_index_never_outgrows_the_bound(tmp_path: Path) -> None:
    disk = tier(tmp_path, 300)
    stored = keys(3000, 1)
    for i, key in enumerate(stored):
        disk.put(key, Answer([(f"p{i}", 0.9)]))
        assert len(disk) <= 300 and len(disk._store.index) <= 300
    assert len(disk) >= 300 - 300 // 256 - 1  # evicted in small batches, not emptied
    disk.close()
    assert on_disk(tmp_path) == len(disk._store)  # diskcache was culled in step with the index
    disk = tier(tmp_path, 300)
    try:
        # The newest keys are still served; the oldest are gone from both the index and the disk.
        assert all(disk.lookup(k) is not None for k in stored[-250:])
        assert all(disk.lookup(k) is None for k in stored[:2000])
    finally:
        disk.close()


def test_a_restored_key_counts_as_new(tmp_path: Path) -> None:
    disk = tier(tmp_path, 100)
    try:
        stored = keys(150, 2)
        for key in stored[:100]:
            disk.put(key, Answer([("x", 0.5)]))
        disk.put(stored[0], Answer([("x", 0.6)], 2))  # confirmed: stored again, as diskcache re-dates it
        for key in stored[100:]:
            disk.put(key, Answer([("y", 0.5)]))
        found = disk.lookup(stored[0])
        assert found is not None and found[0].inferences == 2
        assert disk.lookup(stored[1]) is None
    finally:
        disk.close()


def test_reopening_with_a_smaller_bound_drops_the_oldest(tmp_path: Path) -> None:
    disk = tier(tmp_path, 10_000)
    stored = keys(1000, 3)
    for key in stored:
        disk.put(key, Answer([("z", 0.5)]))
    disk.close()
    disk = tier(tmp_path, 400)
    try:
        assert len(disk) <= 400
        assert all(disk.lookup(k) is not None for k in stored[-390:])
        assert all(disk.lookup(k) is None for k in stored[:600])
    finally:
        disk.close()
    assert on_disk(tmp_path) <= 400


def test_open_indexes_a_batch_and_the_rest_in_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    disk = tier(tmp_path, 10_000)
    stored = keys(1000, 4)
    for key in stored:
        disk.put(key, Answer([("w", 0.5)]))
    disk.close()
    monkeypatch.setattr(disk_module, "_LOAD_BATCH", 150)
    disk = tier(tmp_path, 10_000)
    try:
        assert disk.loading and len(disk) == 150  # open() returned after one batch
        fresh = keys(5, 5)
        disk.put(fresh[0], Answer([("v", 0.5)]))
        disk.put(stored[-1], Answer([("w", 0.7)], 2))  # not indexed yet: the loader must not add it twice
        steps = 0
        while disk.load_step():
            steps += 1
        assert steps == 6 and not disk.loading
        assert len(disk) == 1001 and len(disk._store.index) == 1001
        assert all(disk.lookup(k) is not None for k in stored + fresh[:1])
    finally:
        disk.close()


async def test_result_cache_finishes_indexing_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = tier(tmp_path, 10_000)
    for key in keys(500, 6):
        disk.put(key, Answer([("u", 0.5)]))
    disk.close()
    monkeypatch.setattr(disk_module, "_LOAD_BATCH", 64)
    result = ResultCache(MemoryTier(10, 8, same_colour), DiskTier(tmp_path, 64 * 1024 * 1024, "ns", 8, same_colour))
    await result.open()
    try:
        assert result.entries_disk < 500
        assert result._loading is not None
        await result._loading
        assert result.entries_disk == 500
    finally:
        await result.close()


def test_disk_bytes_include_the_write_ahead_log(tmp_path: Path) -> None:
    """cache.disk_bytes is what the folder takes on disk, SQLite's -wal file included, however much is written."""
    budget = 1024 * 1024
    disk = DiskTier(tmp_path / "c", budget, "ns", 8, same_colour, 1_000_000)
    disk.open()
    prediction = [(f"label-{i}", 0.1) for i in range(5)]
    for key in keys(4_500, 7):  # ~400 bytes an entry: more than the budget holds
        disk.put(key, Answer(prediction))
    used = sum(p.stat().st_size for p in (tmp_path / "c").rglob("*") if p.is_file())
    disk.close()
    assert 0 < used <= budget * 1.05, f"{used} bytes on disk for a {budget}-byte budget"


async def test_a_failed_disk_tier_is_retried_after_its_backoff(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    disk = DiskTier(blocker, 8 * 1024 * 1024, "ns", 8, same_colour, 1000, retry_s=0.2)
    cache = ResultCache(MemoryTier(100, 8, same_colour), disk)
    await cache.open()
    assert not disk.available and "is a file" in disk.error and disk.retry_at is not None
    key = keys(1, 3)[0]
    assert await cache.lookup_disk(key) is None and not disk.available  # not due yet: no attempt
    blocker.unlink()
    blocker.mkdir()
    await asyncio.sleep(0.3)
    assert await cache.lookup_disk(key) is None  # a miss, but the tier is open again
    assert disk.available and disk.error is None and disk.retry_at is None
    await cache.close()
