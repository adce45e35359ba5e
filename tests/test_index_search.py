"""HammingIndex.search's paths against a brute-force scan: the three-substring layout (the one from 750k keys) at
every radius, where tables differ in probe count below radius 8, answers of a few hits (read item by item) and of
many (gathered), and the insert buffer beside the tables."""

from __future__ import annotations

import numpy as np
import pytest

from shelfsense.recognition.index import HammingIndex, popcount_bytes
from shelfsense.recognition.index_tables import make_plan


def flipped(key: int, bits: int, rng: np.random.Generator) -> int:
    for p in rng.choice(64, size=bits, replace=False).tolist():
        key ^= 1 << p
    return key


def brute_force(pairs: list[tuple[int, int]], query: int, radius: int) -> list[tuple[int, int]]:
    return sorted((d, i) for key, i in pairs if (d := (key ^ query).bit_count()) <= radius)


@pytest.mark.parametrize("buffered", [0, 300])
def test_three_substrings_match_brute_force_at_every_radius(buffered: int) -> None:
    rng = np.random.default_rng(13)
    centres = rng.integers(0, 2**63, size=40).tolist()
    # 40 clusters of 30 keys 0..10 bits from their centre (1 to 30 hits a query, several found through more than
    # one substring), among 3,000 random keys; `buffered` more keys stay in the insert buffer.
    keys = [flipped(c, int(rng.integers(11)), rng) for c in centres for _ in range(30)]
    keys += rng.integers(0, 2**64 - 1, size=3000, dtype=np.uint64, endpoint=True).tolist()
    index = HammingIndex(8, chunks=3, scan_limit=0, buffer_limit=max(buffered, 1) + 1)
    index.add_many(np.array(keys, dtype=np.uint64), np.arange(len(keys)))
    pairs = [(key, i) for i, key in enumerate(keys)]
    for c in centres[:10]:
        for _ in range(buffered // 10):
            key = flipped(c, int(rng.integers(9)), rng)
            index.add(key, len(pairs))
            pairs.append((key, len(pairs)))
    assert index.chunks == 3 and len(index) == len(pairs)
    assert index._n - index._tabled == buffered  # the buffer is scanned beside the tables
    queries = centres + [flipped(c, 4, rng) for c in centres] + rng.integers(0, 2**63, size=20).tolist()
    many = few = 0
    for q in queries:
        for radius in range(9):
            expected = brute_force(pairs, q, radius)
            assert index.search(q, radius) == expected
            many += len(expected) > 16
            few += 0 < len(expected) <= 16
    assert many and few


@pytest.mark.parametrize(("radius", "chunks", "tables"), [(8, 3, 3), (7, 3, 3), (1, 3, 3), (0, 3, 3), (8, 4, 4)])
def test_plan_counts_repeat_into_the_table_of_each_probe(radius: int, chunks: int, tables: int) -> None:
    # search repeats the query's substrings by plan.counts where search_many indexes them by plan.tables.
    plan = make_plan(radius, chunks, tables, 12)
    assert np.array_equal(np.arange(tables).repeat(plan.counts), plan.tables)
    assert plan.first == int(np.count_nonzero(plan.tables == 0))


def test_byte_table_popcount_keeps_the_shape() -> None:
    # numpy < 2's popcount: search_many checks its insert buffer as a (query x row) array.
    values = np.random.default_rng(3).integers(0, 2**64 - 1, size=(3, 5), dtype=np.uint64, endpoint=True)
    counts = popcount_bytes(values)
    assert counts.shape == (3, 5)
    assert counts.tolist() == [[v.bit_count() for v in row] for row in values.tolist()]
