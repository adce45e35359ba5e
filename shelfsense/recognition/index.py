"""Near-duplicate lookup of 64-bit perceptual keys by Hamming distance (multi-index hashing).

The 64 bits are split into m contiguous substrings. If a stored key is within distance d of the query, the
per-substring distances add up to at most d, so with probe radii r_i chosen such that sum(r_i + 1) = d + 1 at
least one substring is within its r_i (pigeonhole). Search therefore enumerates, per substring, the values
within r_i bits of the query's substring, collects the keys stored under them, and verifies each candidate
with one popcount. m is chosen per max_distance from bench/bench_index.py (docs/distance.md); at
max_distance 0 the index is a plain dict.

Below `scan_limit` distinct keys a numpy XOR + popcount over a packed uint64 array is faster than probing
(measured: 11 us vs 44 us at 10k keys, radius 8), so the substring tables are only built once the index grows
past it; the packed array is kept either way and is what small caches use.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from itertools import combinations

import numpy as np

KEY_BITS = 64
MAX_SUPPORTED_DISTANCE = 32
# Distinct keys above which the substring tables take over from the linear scan (crossover in docs/distance.md).
DEFAULT_SCAN_LIMIT = 200_000
_KEY_LIMIT = 1 << KEY_BITS

# Substring count per configured max_distance, measured with bench/bench_index.py --sweep at 100k and 1M keys
# (docs/distance.md): wide substrings mean few candidates but many probes, narrow ones the reverse. Three
# 21/21/22-bit substrings won at every radius from 2 to 12 at 1M keys; four 16-bit ones above that.
_CHUNKS_BY_DISTANCE = {0: 1, 1: 2}


def default_chunks(max_distance: int) -> int:
    return _CHUNKS_BY_DISTANCE.get(max_distance, 3 if max_distance <= 12 else 4)


_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_bytes(x: np.ndarray) -> np.ndarray:
    """Per-element popcount of a uint64 array through a byte table (numpy < 2 has no bitwise_count)."""
    return _BYTE_POP[x.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.uint8)


# The tflite-runtime fallback environment pins numpy < 2.
_popcount = getattr(np, "bitwise_count", popcount_bytes)


@cache
def _flips(width: int, radius: int) -> tuple[int, ...]:
    """Every mask of `width` bits with at most `radius` bits set, fewest bits first."""
    masks = [0]
    for r in range(1, min(radius, width) + 1):
        for positions in combinations(range(width), r):
            m = 0
            for p in positions:
                m |= 1 << p
            masks.append(m)
    return tuple(masks)


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 0 <= bits < _KEY_LIMIT:
        raise ValueError(f"key must be an int in [0, 2**64), got {bits!r}")


class HammingIndex:
    """Near-duplicate lookup of 64-bit keys by Hamming distance; exact when max_distance is 0."""

    __slots__ = ("max_distance", "chunks", "scan_limit", "_ids", "_layout", "_tables", "_count", "_packed", "_slot")

    def __init__(self, max_distance: int, *, chunks: int | None = None, scan_limit: int = DEFAULT_SCAN_LIMIT) -> None:
        if (
            isinstance(max_distance, bool)
            or not isinstance(max_distance, int)
            or not 0 <= max_distance <= MAX_SUPPORTED_DISTANCE
        ):
            raise ValueError(f"max_distance must be an int in 0..{MAX_SUPPORTED_DISTANCE}, got {max_distance!r}")
        m = default_chunks(max_distance) if chunks is None else chunks
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 16:
            raise ValueError(f"chunks must be an int in 1..16, got {chunks!r}")
        if m == 1 and max_distance > 0:
            raise ValueError("chunks=1 only supports max_distance 0 (it would probe every 64-bit neighbour)")
        if isinstance(scan_limit, bool) or not isinstance(scan_limit, int) or scan_limit < 0:
            raise ValueError(f"scan_limit must be a non-negative int, got {scan_limit!r}")
        self.max_distance = max_distance
        self.chunks = m
        self.scan_limit = scan_limit
        # Distinct keys packed densely in slots 0..len(_slot)-1; removal moves the last key into the hole.
        self._packed = np.zeros(1024, dtype=np.uint64)
        self._slot: dict[int, int] = {}
        # key -> item id, or a set of ids once several items share one key (keeps the common case small).
        self._ids: dict[int, int | set[int]] = {}
        self._count = 0
        # Substring i covers bits [shift, shift + width); widths differ by at most one.
        base, extra = divmod(KEY_BITS, m)
        layout, shift = [], 0
        for i in range(m):
            width = base + (1 if i < extra else 0)
            layout.append((shift, (1 << width) - 1, width))
            shift += width
        self._layout: tuple[tuple[int, int, int], ...] = tuple(layout)
        # substring value -> key, or a list of keys (most buckets hold one key at large sizes); None until the
        # index outgrows scan_limit.
        self._tables: list[dict[int, int | list[int]]] | None = None

    def __len__(self) -> int:
        """Number of (key, item id) pairs stored."""
        return self._count

    def __contains__(self, bits: object) -> bool:
        return bits in self._ids

    def add(self, bits: int, item_id: int) -> None:
        _check_bits(bits)
        held = self._ids.get(bits)
        if held is None:
            self._ids[bits] = item_id
            self._count += 1
            slot = len(self._slot)
            if slot == len(self._packed):
                self._packed = np.concatenate([self._packed, np.zeros_like(self._packed)])
            self._packed[slot] = bits
            self._slot[bits] = slot
            if self._tables is not None:
                self._table_add(bits)
            elif slot + 1 > self.scan_limit and self.chunks > 1:
                self._tables = [{} for _ in range(self.chunks)]
                for key in self._slot:
                    self._table_add(key)
        elif type(held) is int:
            if held != item_id:
                self._ids[bits] = {held, item_id}
                self._count += 1
        elif item_id not in held:
            held.add(item_id)
            self._count += 1

    def _table_add(self, bits: int) -> None:
        assert self._tables is not None
        for (shift, mask, _), table in zip(self._layout, self._tables, strict=True):
            sub = (bits >> shift) & mask
            bucket = table.get(sub)
            if bucket is None:
                table[sub] = bits
            elif type(bucket) is int:
                table[sub] = [bucket, bits]
            else:
                bucket.append(bits)

    def remove(self, bits: int, item_id: int) -> None:
        """Forget one (key, item id) pair; absent pairs are ignored."""
        held = self._ids.get(bits)
        if held is None:
            return
        if type(held) is int:
            if held != item_id:
                return
        else:
            if item_id not in held:
                return
            held.discard(item_id)
            self._count -= 1
            if len(held) == 1:
                self._ids[bits] = next(iter(held))
            return
        del self._ids[bits]
        self._count -= 1
        slot = self._slot.pop(bits)
        last = len(self._slot)
        if slot != last:
            moved = int(self._packed[last])
            self._packed[slot] = moved
            self._slot[moved] = slot
        if self._tables is None:
            return
        for (shift, mask, _), table in zip(self._layout, self._tables, strict=True):
            sub = (bits >> shift) & mask
            bucket = table[sub]
            if type(bucket) is int:
                del table[sub]
            else:
                bucket.remove(bits)
                if len(bucket) == 1:
                    table[sub] = bucket[0]

    def search(self, bits: int, max_distance: int | None = None) -> list[tuple[int, int]]:
        """[(distance, item_id)] of stored keys within max_distance, nearest first (ties by item id)."""
        _check_bits(bits)
        radius = self.max_distance if max_distance is None else max_distance
        if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius <= self.max_distance:
            raise ValueError(
                f"search radius must be an int in 0..{self.max_distance} (the index's "
                f"max_distance), got {max_distance!r}"
            )
        if radius == 0 or self.chunks == 1:
            held = self._ids.get(bits)
            if held is None:
                return []
            return [(0, held)] if type(held) is int else [(0, i) for i in sorted(held)]

        if self._tables is None:
            return self._scan(bits, radius)
        # Radii with sum(r_i + 1) == radius + 1; r_i == -1 means substring i need not be probed at all.
        m = self.chunks
        base, extra = divmod(radius + 1, m)
        candidates: set[int] = set()
        add, update = candidates.add, candidates.update
        for i, ((shift, mask, width), table) in enumerate(zip(self._layout, self._tables, strict=True)):
            r = base - 1 + (1 if i < extra else 0)
            if r < 0:
                break
            sub = (bits >> shift) & mask
            get = table.get
            for flip in _flips(width, r):
                bucket = get(sub ^ flip)
                if bucket is None:
                    continue
                if type(bucket) is int:
                    add(bucket)
                else:
                    update(bucket)

        pairs = ((d, key) for key in candidates if (d := (key ^ bits).bit_count()) <= radius)
        return self._expand(pairs)

    def _scan(self, bits: int, radius: int) -> list[tuple[int, int]]:
        packed = self._packed[: len(self._slot)]
        dist = _popcount(packed ^ np.uint64(bits))
        hit = np.flatnonzero(dist <= radius)
        return self._expand(zip(dist[hit].tolist(), packed[hit].tolist(), strict=True))

    def _expand(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        found: list[tuple[int, int]] = []
        ids = self._ids
        for d, key in pairs:
            held = ids[key]
            if type(held) is int:
                found.append((d, held))
            else:
                found.extend((d, i) for i in held)
        found.sort()
        return found
