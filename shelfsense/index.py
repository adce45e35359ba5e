"""Near-duplicate lookup of 64-bit perceptual keys by Hamming distance (multi-index hashing).

The 64 bits are split into m contiguous substrings. If a stored key is within distance d of the query, the
per-substring distances add up to at most d, so with probe radii r_i chosen such that sum(r_i + 1) = d + 1 at
least one substring is within its r_i (pigeonhole). Search therefore enumerates, per substring, the values
within r_i bits of the query's substring, collects the keys stored under them, and verifies each candidate
with one popcount. m is chosen per max_distance from bench/bench_index.py (docs/distance.md); at
max_distance 0 the index is a plain dict.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

KEY_BITS = 64
MAX_SUPPORTED_DISTANCE = 32
_KEY_LIMIT = 1 << KEY_BITS

# Substring count per configured max_distance, measured with bench/bench_index.py --sweep at 100k and 1M keys:
# wide substrings mean few candidates but many probes, narrow ones the reverse.
_CHUNKS_BY_DISTANCE = {0: 1, 1: 2, 2: 2, 3: 3, 4: 3, 5: 3, 6: 3, 7: 4, 8: 4, 9: 4, 10: 4, 11: 4, 12: 5, 13: 5, 14: 5,
                       15: 5, 16: 6}


def default_chunks(max_distance: int) -> int:
    return _CHUNKS_BY_DISTANCE.get(max_distance, max(6, (max_distance + 2) // 3))


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

    __slots__ = ("max_distance", "chunks", "_ids", "_layout", "_tables", "_count")

    def __init__(self, max_distance: int, *, chunks: int | None = None) -> None:
        if isinstance(max_distance, bool) or not isinstance(max_distance, int) \
                or not 0 <= max_distance <= MAX_SUPPORTED_DISTANCE:
            raise ValueError(f"max_distance must be an int in 0..{MAX_SUPPORTED_DISTANCE}, got {max_distance!r}")
        m = default_chunks(max_distance) if chunks is None else chunks
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 16:
            raise ValueError(f"chunks must be an int in 1..16, got {chunks!r}")
        if m == 1 and max_distance > 0:
            raise ValueError("chunks=1 only supports max_distance 0 (it would probe every 64-bit neighbour)")
        self.max_distance = max_distance
        self.chunks = m
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
        # substring value -> key, or a list of keys (most buckets hold one key at realistic sizes).
        self._tables: list[dict[int, int | list[int]]] = [] if m == 1 else [{} for _ in range(m)]

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
            for (shift, mask, _), table in zip(self._layout, self._tables, strict=False):
                sub = (bits >> shift) & mask
                bucket = table.get(sub)
                if bucket is None:
                    table[sub] = bits
                elif type(bucket) is int:
                    table[sub] = [bucket, bits]
                else:
                    bucket.append(bits)
        elif type(held) is int:
            if held != item_id:
                self._ids[bits] = {held, item_id}
                self._count += 1
        elif item_id not in held:
            held.add(item_id)
            self._count += 1

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
        for (shift, mask, _), table in zip(self._layout, self._tables, strict=False):
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
            raise ValueError(f"search radius must be an int in 0..{self.max_distance} (the index's "
                             f"max_distance), got {max_distance!r}")
        if radius == 0 or self.chunks == 1:
            held = self._ids.get(bits)
            if held is None:
                return []
            return [(0, held)] if type(held) is int else [(0, i) for i in sorted(held)]

        # Radii with sum(r_i + 1) == radius + 1; r_i == -1 means substring i need not be probed at all.
        m = self.chunks
        base, extra = divmod(radius + 1, m)
        candidates: set[int] = set()
        add, update = candidates.add, candidates.update
        for i, ((shift, mask, width), table) in enumerate(zip(self._layout, self._tables, strict=False)):
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

        found: list[tuple[int, int]] = []
        ids = self._ids
        for key in candidates:
            d = (key ^ bits).bit_count()
            if d <= radius:
                held = ids[key]
                if type(held) is int:
                    found.append((d, held))
                else:
                    found.extend((d, i) for i in held)
        found.sort()
        return found
