from __future__ import annotations

import random

import numpy as np
import pytest

from shelfsense.recognition.index import DEFAULT_SCAN_LIMIT, HammingIndex, popcount_bytes

# scan_limit=0 builds the substring tables from the first key; the default keeps these small indexes on the scan.
PATHS = [0, DEFAULT_SCAN_LIMIT]


def flip_bits(bits: int, n: int, rng: random.Random) -> int:
    for p in rng.sample(range(64), n):
        bits ^= 1 << p
    return bits


def brute_force(entries: dict[int, set[int]], query: int, radius: int) -> list[tuple[int, int]]:
    return sorted((d, i) for key, ids in entries.items() if (d := (key ^ query).bit_count()) <= radius for i in ids)


def populated(
    max_distance: int, rng: random.Random, n: int = 3000, chunks: int | None = None, scan_limit: int = 0
) -> tuple[HammingIndex, dict[int, set[int]]]:
    index = HammingIndex(max_distance, chunks=chunks, scan_limit=scan_limit)
    entries: dict[int, set[int]] = {}
    keys: list[int] = []
    for item in range(n):
        # A third of the keys are near-duplicates of earlier ones, so every radius has answers to find.
        if keys and rng.random() < 0.33:
            key = flip_bits(rng.choice(keys), rng.randint(0, max_distance + 2), rng)
        else:
            key = rng.getrandbits(64)
        keys.append(key)
        index.add(key, item)
        entries.setdefault(key, set()).add(item)
    return index, entries


@pytest.mark.parametrize(
    ("max_distance", "chunks"),
    [(0, None), (1, None), (3, None), (4, None), (8, None), (8, 2), (8, 7), (12, None), (16, None)],
)
@pytest.mark.parametrize("scan_limit", PATHS)
def test_search_equals_brute_force(max_distance: int, chunks: int | None, scan_limit: int) -> None:
    rng = random.Random(1000 + max_distance)
    index, entries = populated(max_distance, rng, chunks=chunks, scan_limit=scan_limit)
    keys = list(entries)
    for _ in range(150):
        base = rng.choice(keys)
        query = flip_bits(base, rng.randint(0, max_distance + 3), rng) if rng.random() < 0.8 else rng.getrandbits(64)
        for radius in sorted({0, max_distance // 2, max_distance}):
            assert index.search(query, radius) == brute_force(entries, query, radius)
        assert index.search(query) == brute_force(entries, query, max_distance)


@pytest.mark.parametrize("scan_limit", PATHS)
def test_finds_every_key_at_each_exact_distance(scan_limit: int) -> None:
    rng = random.Random(7)
    for max_distance in (2, 5, 8, 11, 16):
        index = HammingIndex(max_distance, scan_limit=scan_limit)
        query = rng.getrandbits(64)
        for d in range(max_distance + 3):
            index.add(flip_bits(query, d, rng), d)
        assert index.search(query) == [(d, d) for d in range(max_distance + 1)]


@pytest.mark.parametrize("scan_limit", [*PATHS, 1500])
def test_removals_match_brute_force(scan_limit: int) -> None:
    # 1500: the tables are built mid-way through adding and must stay right as removals shrink the index.
    rng = random.Random(3)
    index, entries = populated(8, rng, n=2000, scan_limit=scan_limit)
    pairs = [(k, i) for k, ids in entries.items() for i in ids]
    rng.shuffle(pairs)
    for key, item in pairs[:1200]:
        index.remove(key, item)
        entries[key].discard(item)
        if not entries[key]:
            del entries[key]
    assert len(index) == sum(len(ids) for ids in entries.values()) == len(pairs) - 1200
    for key in list(entries)[:200] + [k for k, _ in pairs[:100]]:
        assert index.search(key) == brute_force(entries, key, 8)
    for key, item in pairs[1200:]:
        index.remove(key, item)
    assert len(index) == 0
    assert index.search(pairs[0][0]) == []


def test_remove_absent_is_silent() -> None:
    index = HammingIndex(4)
    index.add(0xFF, 1)
    index.remove(0xFF, 2)
    index.remove(0xF0, 1)
    assert len(index) == 1
    assert index.search(0xFF) == [(0, 1)]


@pytest.mark.parametrize("scan_limit", PATHS)
def test_duplicate_bits_with_several_ids(scan_limit: int) -> None:
    index = HammingIndex(6, scan_limit=scan_limit)
    key = 0x0123_4567_89AB_CDEF
    for item in (5, 3, 9):
        index.add(key, item)
    index.add(key, 3)  # re-adding the same pair is not a second entry
    index.add(key ^ 0b11, 1)
    assert len(index) == 4
    assert key in index
    assert index.search(key) == [(0, 3), (0, 5), (0, 9), (2, 1)]
    index.remove(key, 5)
    assert index.search(key) == [(0, 3), (0, 9), (2, 1)]
    index.remove(key, 3)
    index.remove(key, 9)
    assert key not in index
    assert index.search(key) == [(2, 1)]


@pytest.mark.parametrize("scan_limit", PATHS)
def test_output_sorted_by_distance(scan_limit: int) -> None:
    rng = random.Random(11)
    index = HammingIndex(10, scan_limit=scan_limit)
    query = rng.getrandbits(64)
    for item in range(200):
        index.add(flip_bits(query, rng.randint(0, 10), rng), item)
    found = index.search(query)
    assert len(found) == 200
    assert found == sorted(found)
    assert [d for d, _ in found] == sorted(d for d, _ in found)


def test_exact_index_at_distance_zero() -> None:
    index = HammingIndex(0)
    index.add(42, 1)
    index.add(43, 2)
    assert index.search(42) == [(0, 1)]
    assert index.search(41) == []
    with pytest.raises(ValueError, match="search radius"):
        index.search(42, 1)


@pytest.mark.parametrize("bad", [-1, 33, 1.5, "8", None, True])
def test_constructor_rejects_bad_max_distance(bad: object) -> None:
    with pytest.raises(ValueError, match="max_distance"):
        HammingIndex(bad)  # type: ignore[arg-type]


def test_search_radius_bounds() -> None:
    index = HammingIndex(8)
    index.add(1, 1)
    with pytest.raises(ValueError, match="0..8"):
        index.search(1, 9)
    with pytest.raises(ValueError, match="search radius"):
        index.search(1, -1)


@pytest.mark.parametrize("bad", [-1, 1 << 64, 2.0])
def test_keys_must_be_64_bit(bad: object) -> None:
    index = HammingIndex(4)
    with pytest.raises(ValueError, match="2\\*\\*64"):
        index.add(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2\\*\\*64"):
        index.search(bad)  # type: ignore[arg-type]


def test_byte_table_popcount_matches_int_bit_count() -> None:
    rng = random.Random(5)
    values = [0, 1, (1 << 64) - 1, 1 << 63] + [rng.getrandbits(64) for _ in range(500)]
    assert popcount_bytes(np.array(values, dtype=np.uint64)).tolist() == [v.bit_count() for v in values]


def test_bad_scan_limit_rejected() -> None:
    with pytest.raises(ValueError, match="scan_limit"):
        HammingIndex(8, scan_limit=-1)


# --- the compact layout: insert buffer, merges, tombstones, bytes a key ---


def planted(n: int, max_distance: int, rng: np.random.Generator) -> np.ndarray:
    """Random keys, a third of them near-duplicates (0..max_distance + 2 bits away) of earlier ones."""
    keys = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    near = np.flatnonzero(rng.random(n) < 0.33)
    near = near[near > 0]
    for i in near.tolist():
        key = int(keys[rng.integers(i)])
        for p in rng.choice(64, size=int(rng.integers(max_distance + 3)), replace=False).tolist():
            key ^= 1 << p
        keys[i] = key
    return keys


@pytest.mark.parametrize("max_distance", [2, 8, 16])
def test_churn_through_buffer_merges_and_compaction_matches_brute_force(max_distance: int) -> None:
    # A small buffer forces many merges, removals force tombstones and compactions, and the size crosses the
    # point where the bucket width grows (a full rebuild): every path must agree with a scan at every radius.
    rng = np.random.default_rng(max_distance)
    keys = planted(6000, max_distance, rng)
    index = HammingIndex(max_distance, scan_limit=500, buffer_limit=97)
    entries: dict[int, set[int]] = {}
    for item, key in enumerate(keys.tolist()):
        index.add(key, item)
        entries.setdefault(key, set()).add(item)
        if item % 3 == 2:  # forget a random earlier pair
            victim = int(rng.integers(item))
            key_v = int(keys[victim])
            index.remove(key_v, victim)
            entries.get(key_v, set()).discard(victim)
            if not entries.get(key_v, True):
                del entries[key_v]
        if item % 1000 == 999:
            assert len(index) == sum(len(ids) for ids in entries.values())
            for q in [*keys[rng.integers(item, size=20)].tolist(), *rng.integers(0, 2**63, size=5).tolist()]:
                for radius in sorted({0, max_distance // 2, max_distance}):
                    assert index.search(q, radius) == brute_force(entries, q, radius)


def test_add_many_equals_one_at_a_time() -> None:
    rng = np.random.default_rng(4)
    keys = planted(40_000, 8, rng)
    bulk = HammingIndex(8)
    bulk.add_many(keys, np.arange(keys.size))
    single = HammingIndex(8)
    for i, k in enumerate(keys.tolist()):
        single.add(k, i)
    assert len(bulk) == len(single) == keys.size
    for q in keys[:300].tolist():
        assert bulk.search(q) == single.search(q)


def test_many_ids_under_one_key_are_all_found() -> None:
    # Flat crops all share one pHash and differ by colour only: thousands of ids can sit under one key.
    index = HammingIndex(8, scan_limit=0, buffer_limit=50)
    flat = 0x8000_0000_0000_0000
    for item in range(3000):
        index.add(flat, item)
    index.add(flat ^ 0b111, 5000)
    found = index.search(flat)
    assert found == [(0, i) for i in range(3000)] + [(3, 5000)]
    for item in range(0, 3000, 2):
        index.remove(flat, item)
    assert index.search(flat, 2) == [(0, i) for i in range(1, 3000, 2)]


def test_a_million_keys_cost_at_most_40_bytes_each() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2**64 - 1, size=1_000_000, dtype=np.uint64, endpoint=True)
    index = HammingIndex(8)
    index.add_many(keys, np.arange(keys.size))
    assert index.nbytes / len(index) <= 40
    # Churn as a full disk tier sees it (each store evicts the oldest) leaves tombstones and a part-full buffer.
    for i, k in enumerate(rng.integers(0, 2**63, size=20_000).tolist()):
        index.add(k, keys.size + i)
        index.remove(int(keys[i]), i)
    assert len(index) == keys.size
    assert index.nbytes / len(index) <= 40
    q = int(keys[500_000]) ^ 0b1011
    assert index.search(q) == [(3, 500_000)]


def test_tables_dropped_when_the_index_shrinks() -> None:
    index = HammingIndex(8, scan_limit=1000)
    for i in range(1500):
        index.add(i * 0x9E37_79B9_7F4A_7C15 % 2**64, i)
    assert index.nbytes > 1500 * 16 + 1000  # tables built
    for i in range(1200):
        index.remove(i * 0x9E37_79B9_7F4A_7C15 % 2**64, i)
    assert len(index) == 300
    assert index.search(1200 * 0x9E37_79B9_7F4A_7C15 % 2**64) == [(0, 1200)]
    assert index.nbytes < 300 * 16 + 1024 * 16  # back to the packed keys and ids


@pytest.mark.parametrize("bad", [-1, 1 << 63, True, 1.0])
def test_item_ids_must_be_non_negative_int64(bad: object) -> None:
    with pytest.raises(ValueError, match="item id"):
        HammingIndex(4).add(1, bad)  # type: ignore[arg-type]


def test_substring_count_switches_with_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # The index changes layout (four substrings -> three and back) at a rebuild; searches stay exact across it.
    import shelfsense.recognition.index as index_module

    monkeypatch.setattr(index_module, "THREE_CHUNKS_FROM", 4000)
    rng = np.random.default_rng(8)
    keys = planted(9000, 8, rng)
    index = HammingIndex(8, scan_limit=500, buffer_limit=300)
    entries: dict[int, set[int]] = {}
    seen = set()
    for item, key in enumerate(keys[:6000].tolist()):
        index.add(key, item)
        entries.setdefault(key, set()).add(item)
        seen.add(index.chunks)
    assert seen == {4, 3}
    for item in range(5000):  # shrink below the switch: compactions go back to four
        key = int(keys[item])
        index.remove(key, item)
        entries[key].discard(item)
        if not entries[key]:
            del entries[key]
    assert index.chunks == 4
    for q in [*keys[4000:6000:10].tolist(), *rng.integers(0, 2**63, size=50).tolist()]:
        for radius in (0, 4, 8):
            assert index.search(q, radius) == brute_force(entries, q, radius)


def test_wide_buckets_merge_exactly() -> None:
    # Radius 0 (one table, the whole key) gets buckets wider than 16 bits from ~25k keys: the 32-bit sort and
    # merge path.
    rng = np.random.default_rng(9)
    keys = rng.integers(0, 2**64 - 1, size=60_000, dtype=np.uint64, endpoint=True)
    index = HammingIndex(0)
    index.add_many(keys[:40_000], np.arange(40_000))
    assert index._w > 16
    for i, k in enumerate(keys[40_000:].tolist()):
        index.add(k, 40_000 + i)
        index.remove(int(keys[i]), i)
    for i in range(0, 60_000, 97):
        assert index.search(int(keys[i])) == ([] if i < 20_000 else [(0, i)])


def test_stable_order_of_wide_buckets_is_a_stable_argsort() -> None:
    from shelfsense.recognition.index_tables import _stable_order

    sub = np.random.default_rng(3).integers(0, 1 << 20, size=5000).astype(np.uint32)
    assert (_stable_order(sub) == np.argsort(sub, kind="stable")).all()


@pytest.mark.parametrize(("max_distance", "chunks"), [(8, None), (8, 3), (4, None), (0, None), (16, None)])
def test_search_many_equals_one_search_each(max_distance: int, chunks: int | None) -> None:
    # Tabled rows, a part-full insert buffer and tombstones, at every radius up to the maximum.
    rng = np.random.default_rng(11)
    keys = planted(5000, max_distance, rng)
    index = HammingIndex(max_distance, chunks=chunks, scan_limit=1000, buffer_limit=400)
    for item, key in enumerate(keys.tolist()):
        index.add(key, item)
        if item % 4 == 3:
            index.remove(int(keys[item // 2]), item // 2)
    assert index._n > index._tabled > 0
    frame = [*keys[rng.integers(5000, size=6)].tolist(), *rng.integers(0, 2**63, size=2).tolist()]
    frame[1] = frame[0]  # two slots showing the same product
    for radius in sorted({0, max_distance // 2, max_distance}):
        assert index.search_many(frame, radius) == [index.search(q, radius) for q in frame]
    assert index.search_many(frame) == [index.search(q) for q in frame]
    assert index.search_many([]) == []
    with pytest.raises(ValueError, match="key must be"):
        index.search_many([1, -1])


def test_search_many_without_tables() -> None:
    index = HammingIndex(8)
    for i in range(100):
        index.add(i * 0x9E37_79B9_7F4A_7C15 % 2**64, i)
    frame = [0x9E37_79B9_7F4A_7C15, 3 * 0x9E37_79B9_7F4A_7C15 % 2**64 ^ 0b101, 12345]
    assert index.search_many(frame) == [index.search(q) for q in frame]


def test_candidate_positions_beyond_the_cached_iota(monkeypatch: pytest.MonkeyPatch) -> None:
    # Searches with more candidates than the cached 0, 1, 2, ... fall back to np.arange: same answers.
    import shelfsense.recognition.index as index_module

    rng = random.Random(12)
    index, entries = populated(8, rng, n=3000)
    queries = [flip_bits(k, rng.randint(0, 9), rng) for k in rng.sample(list(entries), 40)]
    before = [index.search(q) for q in queries]
    monkeypatch.setattr(index_module, "_IOTA", np.arange(4))
    assert [index.search(q) for q in queries] == before == [brute_force(entries, q, 8) for q in queries]


@pytest.mark.parametrize("n", [29_200, 116_600])
def test_at_most_40_bytes_a_key_where_the_offsets_budget_is_tightest(n: int) -> None:
    # Just past a bucket-width step the offsets cost the most a key; churn adds tombstones and a part-full buffer.
    rng = np.random.default_rng(6)
    keys = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    index = HammingIndex(8)
    index.add_many(keys, np.arange(n))
    for i, k in enumerate(rng.integers(0, 2**63, size=n // 8).tolist()):
        index.add(k, n + i)
        index.remove(int(keys[i]), i)
        if i % 500 == 0:
            assert index.nbytes / len(index) <= 40
