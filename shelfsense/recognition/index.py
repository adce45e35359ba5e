"""Near-duplicate lookup of 64-bit perceptual keys by Hamming distance: compact multi-index hashing in numpy.

The 64 bits are split into m contiguous substrings (4 of 16 bits by default). If a stored key is within
distance d of the query, the per-substring distances add up to at most d, so with probe radii r_i chosen such
that sum(r_i + 1) = d + 1 at least one substring is within its r_i (pigeonhole). Each table buckets the rows
by the low `w` bits of its substring (w <= the substring's width); a key within r_i on the whole substring is
also within r_i on those w bits, so probing the w-bit values within r_i of the query's finds a superset of the
answers, which one popcount per candidate on the full key then makes exact.

Layout (why it is compact): the keys and item ids live in two flat arrays, one row per (key, id) pair. A table
is a CSR pair: the row numbers (int32) ordered by bucket, and the offset of each bucket. That is 8 + 8 bytes a
row plus 4 per table, plus 4 * 2**w offsets per table with 2**w chosen near rows / 8: about 33 bytes a key at
m = 4, against ~370 for the former dict-of-buckets index. Changes stay cheap: new rows are appended past the
tabled ones and scanned linearly (a bounded insert buffer) until the tables are rebuilt; removals tombstone
the row (id -1) and are dropped at the next rebuild. A rebuild is a radix argsort per table, O(rows), and
also sorts the rows themselves by table 0's buckets, so table 0's candidates are runs of adjacent keys.

Below `scan_limit` live keys no tables are built: one XOR + popcount over the packed keys is faster there
and needs no table memory (crossover measured by bench/bench_index.py, docs/benchmarks.md).
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

import numpy as np

KEY_BITS = 64
MAX_SUPPORTED_DISTANCE = 32
# Live keys below which search scans instead of building tables (crossover in docs/benchmarks.md, section 2).
DEFAULT_SCAN_LIMIT = 30_000
_KEY_LIMIT = 1 << KEY_BITS
_ID_LIMIT = 1 << 63
_DEAD = -1  # item id of a tombstoned row

# Four 16-bit substrings: at radius 8 that is 188 probes of ~15 rows each at 1M keys (~2,900 candidates).
# Three 21-22-bit ones, with buckets capped at 16 bits to keep the offsets small, mean 411 probes and ~6,000
# candidates; five mean 13-bit buckets and ~7,000; each table costs 4 bytes a key (docs/benchmarks.md, section
# 2; `bench/bench_index.py --sweep` times the alternatives).
_CHUNKS_BY_DISTANCE = {0: 1, 1: 2}


def default_chunks(max_distance: int) -> int:
    return _CHUNKS_BY_DISTANCE.get(max_distance, 4)


_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_bytes(x: np.ndarray) -> np.ndarray:
    """Per-element popcount of a uint64 array through a byte table (numpy < 2 has no bitwise_count)."""
    return _BYTE_POP[x.view(np.uint8)].reshape(-1, 8).sum(axis=1, dtype=np.uint8)


# The tflite-runtime fallback environment pins numpy < 2.
_popcount = getattr(np, "bitwise_count", popcount_bytes)


@cache
def _flips(width: int, radius: int) -> np.ndarray:
    """Every mask of `width` bits with at most `radius` bits set, fewest bits first."""
    masks = [0]
    for r in range(1, min(radius, width) + 1):
        for positions in combinations(range(width), r):
            masks.append(sum(1 << p for p in positions))
    return np.array(masks, dtype=np.int64)


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 0 <= bits < _KEY_LIMIT:
        raise ValueError(f"key must be an int in [0, 2**64), got {bits!r}")


def _check_id(item_id: int) -> None:
    if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 <= item_id < _ID_LIMIT:
        raise ValueError(f"item id must be an int in [0, 2**63), got {item_id!r}")


def _bucket_bits(rows: int, widest: int) -> int:
    # About 8 rows a bucket: the offsets then cost <= 0.5 bytes a row per table, and a probe reads a few rows.
    return max(1, min(widest, rows.bit_length() - 3))


class HammingIndex:
    """Near-duplicate lookup of 64-bit keys by Hamming distance; exact for every radius up to max_distance."""

    __slots__ = (
        "max_distance",
        "chunks",
        "scan_limit",
        "buffer_limit",
        "_layout",
        "_keys",
        "_ids",
        "_n",
        "_tabled",
        "_count",
        "_dead",
        "_ordered",
        "_w",
        "_rows",
        "_offsets",
        "_plans",
    )

    def __init__(
        self,
        max_distance: int,
        *,
        chunks: int | None = None,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
        buffer_limit: int | None = None,
    ) -> None:
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
        if buffer_limit is not None and (not isinstance(buffer_limit, int) or buffer_limit < 1):
            raise ValueError(f"buffer_limit must be a positive int, got {buffer_limit!r}")
        self.max_distance = max_distance
        self.chunks = m
        self.scan_limit = scan_limit
        # None: scale with the index (see _buffer_cap).
        self.buffer_limit = buffer_limit
        # Substring i covers bits [shift, shift + width); widths differ by at most one. Only the first
        # max_distance + 1 substrings are ever probed (the others get r_i = -1), so only they get tables.
        base, extra = divmod(KEY_BITS, m)
        layout, shift = [], 0
        for i in range(m):
            width = base + (1 if i < extra else 0)
            layout.append((shift, width))
            shift += width
        self._layout: tuple[tuple[int, int], ...] = tuple(layout[: min(m, max_distance + 1)])
        self._keys = np.zeros(0, dtype=np.uint64)
        self._ids = np.zeros(0, dtype=np.int64)
        self._n = 0  # rows used in _keys/_ids
        self._tabled = 0  # rows [0, _tabled) are in the tables; [_tabled, _n) is the insert buffer
        self._count = 0  # live (key, id) pairs
        self._dead = 0  # tombstoned rows not yet compacted away
        self._ordered = 0  # rows [0, _ordered) are in table 0's bucket order (as of the last rebuild)
        self._w = 0  # bucket bits of the current tables
        self._rows = np.zeros(0, dtype=np.int32)  # table t's rows at [t * _tabled, (t + 1) * _tabled)
        self._offsets = np.zeros(1, dtype=np.int32)  # bucket b of table t spans _rows[o[g]:o[g + 1]], g=t<<w|b
        self._plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        """Number of (key, item id) pairs stored."""
        return self._count

    def __contains__(self, bits: object) -> bool:
        return isinstance(bits, int) and 0 <= bits < _KEY_LIMIT and self._find(bits).size > 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (keys, ids, tables, offsets, probe plans), slack included."""
        plans = sum(a.nbytes + b.nbytes for a, b in self._plans.values())
        return self._keys.nbytes + self._ids.nbytes + self._rows.nbytes + self._offsets.nbytes + plans

    def _find(self, bits: int) -> np.ndarray:
        """Rows holding `bits` with a live id: the key's bucket in table 0 plus the insert buffer."""
        q = np.uint64(bits)
        found = np.flatnonzero(self._keys[self._tabled : self._n] == q)
        if found.size:
            found += self._tabled
        if self._tabled:
            b = (bits >> self._layout[0][0]) & ((1 << self._w) - 1)
            lo, hi = self._offsets[b : b + 2].tolist()
            rows = self._rows[lo:hi]
            rows = rows[self._keys[rows] == q]
            if rows.size:
                found = np.concatenate([rows, found])
        return found[self._ids[found] != _DEAD] if found.size else found

    def add(self, bits: int, item_id: int) -> None:
        _check_bits(bits)
        _check_id(item_id)
        rows = self._find(bits)
        if rows.size and (self._ids[rows] == item_id).any():
            return  # re-adding a stored pair is not a second entry
        if self._n == self._keys.size:
            self._grow(self._n + 1)
        self._keys[self._n] = bits
        self._ids[self._n] = item_id
        self._n += 1
        self._count += 1
        self._maybe_rebuild()

    def add_many(self, bits: np.ndarray, item_ids: np.ndarray) -> None:
        """Bulk add of pairs the index does not hold yet (e.g. fresh ids); one rebuild instead of one a key."""
        bits = np.asarray(bits, dtype=np.uint64).ravel()
        item_ids = np.asarray(item_ids, dtype=np.int64).ravel()
        if bits.shape != item_ids.shape:
            raise ValueError(f"{bits.size} keys but {item_ids.size} item ids")
        if item_ids.size and item_ids.min() < 0:
            raise ValueError("item ids must be in [0, 2**63)")
        if self._n + bits.size > self._keys.size:
            self._grow(self._n + bits.size)
        self._keys[self._n : self._n + bits.size] = bits
        self._ids[self._n : self._n + bits.size] = item_ids
        self._n += bits.size
        self._count += bits.size
        self._maybe_rebuild()

    def remove(self, bits: int, item_id: int) -> None:
        """Forget one (key, item id) pair; absent pairs are ignored."""
        if not isinstance(bits, int) or not 0 <= bits < _KEY_LIMIT:
            return
        rows = self._find(bits)
        rows = rows[self._ids[rows] == item_id]
        if not rows.size:
            return
        self._ids[rows[0]] = _DEAD
        self._count -= 1
        self._dead += 1
        self._maybe_rebuild()

    def _grow(self, need: int) -> None:
        # An eighth more each time: amortised O(1) appends for at most 2 bytes a row of slack.
        cap = max(need, self._keys.size + self._keys.size // 8, 1024)
        keys = np.zeros(cap, dtype=np.uint64)
        ids = np.full(cap, _DEAD, dtype=np.int64)
        keys[: self._n] = self._keys[: self._n]
        ids[: self._n] = self._ids[: self._n]
        self._keys, self._ids = keys, ids

    def _buffer_cap(self) -> int:
        if self.buffer_limit is not None:
            return self.buffer_limit
        # 1/64 of the index, 256..2,048 rows: the buffer's linear scan stays a few microseconds a search, and a
        # merge (one O(rows) copy of the tables) every 2,048 inserts costs a few microseconds an insert.
        return min(2048, max(256, self._count // 64))

    def _maybe_rebuild(self) -> None:
        # Tables from scan_limit keys on, dropped again only below half of it, so a count hovering around the
        # limit does not rebuild on every change.
        tabled = self._count >= (self.scan_limit // 2 if self._tabled else self.scan_limit)
        if self._dead > max(self._buffer_cap(), self._n // 16):
            self._rebuild(tabled)  # compaction: tombstones cost scan time and table bytes
        elif not tabled:
            if self._tabled:
                self._rebuild(False)
        elif self._n - self._tabled > self._buffer_cap():
            w = _bucket_bits(self._n, min(width for _, width in self._layout))
            if self._tabled and w == self._w and self._n - self._ordered <= self._n // 8:
                self._merge()
            else:
                # First tables, the index outgrew its bucket width, or an eighth of the rows were merged out of
                # table 0's order since the last rebuild (which restores it).
                self._rebuild(True)

    def _merge(self) -> None:
        """Move the insert buffer into the tables: one np.insert over all tables, no re-sorting of old rows."""
        w, n_old, n = self._w, self._tabled, self._n
        keys = self._keys[n_old:n]
        new_rows = np.arange(n_old, n, dtype=np.int32)
        buckets = []
        for t, (shift, _) in enumerate(self._layout):
            buckets.append((((keys >> np.uint64(shift)) & np.uint64((1 << w) - 1)).astype(np.int64)) | (t << w))
        bucket = np.concatenate(buckets)
        order = np.argsort(bucket, kind="stable")  # ascending table, then bucket, then row: _rows' order
        bucket = bucket[order]
        # Each new row goes to the end of its bucket; positions index the old _rows, where table t starts at
        # t * n_old, and np.insert keeps the given order among rows inserted at one position.
        rows = np.insert(self._rows, self._offsets[bucket + 1], np.tile(new_rows, len(self._layout))[order])
        # Table t now starts at t * n; its rows are shifted by (n - n_old) * t, which the counts supply.
        counts = np.bincount(bucket, minlength=len(self._layout) << w)
        self._offsets[1:] += np.cumsum(counts, dtype=np.int32)
        self._rows, self._tabled = rows, n

    def _rebuild(self, tables: bool) -> None:
        """Drop tombstones and re-bucket every live row (radix argsort per table: O(rows))."""
        live = self._ids[: self._n] != _DEAD
        keys, ids = self._keys[: self._n][live], self._ids[: self._n][live]
        n = keys.size
        w = _bucket_bits(n, min(width for _, width in self._layout))
        sub_type = np.uint16 if w <= 16 else np.uint32
        mask = np.uint64((1 << w) - 1)
        tables = tables and n > 0
        if tables:
            # Rows in table 0's bucket order: the probes of table 0 (most of a search's candidates) then read
            # runs of consecutive keys instead of one cache line a candidate.
            order = np.argsort(((keys >> np.uint64(self._layout[0][0])) & mask).astype(sub_type), kind="stable")
            keys, ids = keys[order], ids[order]
        cap = n + self._buffer_cap()
        self._keys = np.zeros(cap, dtype=np.uint64)
        self._ids = np.full(cap, _DEAD, dtype=np.int64)
        self._keys[:n], self._ids[:n] = keys, ids
        self._n, self._dead, self._plans, self._ordered = n, 0, {}, n
        if not tables:
            self._tabled, self._w = 0, 0
            self._rows, self._offsets = np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int32)
            return
        t_count = len(self._layout)
        rows = np.empty(t_count * n, dtype=np.int32)
        counts = np.empty(t_count << w, dtype=np.int32)
        for t, (shift, _) in enumerate(self._layout):
            sub = ((keys >> np.uint64(shift)) & mask).astype(sub_type)
            # numpy radix-sorts 16-bit keys when asked for a stable sort: O(rows).
            rows[t * n : (t + 1) * n] = np.argsort(sub, kind="stable")
            counts[t << w : (t + 1) << w] = np.bincount(sub, minlength=1 << w)
        # One cumsum over the concatenated counts lands table t's buckets t * n rows further on, where its
        # row numbers sit in _rows. int32 halves the offsets (fine below 2**31 rows over all tables).
        offsets = np.zeros((t_count << w) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        self._tabled, self._w, self._rows, self._offsets = n, w, rows, offsets

    def _plan(self, radius: int) -> tuple[np.ndarray, np.ndarray]:
        """(table of each probe, flip mask of each probe) for `radius` over the current tables' w bits."""
        plan = self._plans.get(radius)
        if plan is None:
            base, extra = divmod(radius + 1, self.chunks)
            tables, masks = [], []
            for t in range(len(self._layout)):
                r = base - 1 + (1 if t < extra else 0)
                if r < 0:
                    break  # r_i = -1: this substring need not be probed at all
                flips = _flips(self._w, r)
                tables.append(np.full(flips.size, t, dtype=np.intp))
                masks.append(flips)
            plan = self._plans[radius] = (np.concatenate(tables), np.concatenate(masks))
        return plan

    def _candidates(self, bits: int, radius: int) -> np.ndarray | None:
        """Tabled rows that share a probed bucket with the query; None when a full scan is cheaper."""
        w = self._w
        mask = (1 << w) - 1
        tables, flips = self._plan(radius)
        # Bucket b of table t is offset index t << w | b, and XOR with a w-bit flip leaves the t part alone.
        start_of = np.array([((bits >> shift) & mask) | (t << w) for t, (shift, _) in enumerate(self._layout)])
        probes = start_of[tables] ^ flips
        starts = self._offsets[probes]
        lens = self._offsets[probes + 1] - starts
        ends = np.cumsum(lens)
        total = int(ends[-1])
        if total > self._tabled // 2:
            return None  # a large radius over a small index: the linear scan reads fewer rows
        # Row positions of every probed bucket, concatenated: position k of bucket j is starts[j] + k.
        return self._rows[np.repeat(starts - ends + lens, lens) + np.arange(total)]

    def search(self, bits: int, max_distance: int | None = None) -> list[tuple[int, int]]:
        """[(distance, item_id)] of stored keys within max_distance, nearest first (ties by item id)."""
        _check_bits(bits)
        radius = self.max_distance if max_distance is None else max_distance
        if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius <= self.max_distance:
            raise ValueError(
                f"search radius must be an int in 0..{self.max_distance} (the index's "
                f"max_distance), got {max_distance!r}"
            )
        q = np.uint64(bits)
        keys = self._keys
        cand = self._candidates(bits, radius) if self._tabled else None
        first = 0 if cand is None else self._tabled  # no tables, or too many candidates: scan every row
        if first < self._n:
            found = first + np.flatnonzero(_popcount(keys[first : self._n] ^ q) <= radius)
        else:
            found = np.zeros(0, dtype=np.intp)  # the buffer is empty right after a merge: skip four calls
        if cand is not None and cand.size:
            near = cand[_popcount(keys[cand] ^ q) <= radius]
            if near.size:
                # A key near the query in several substrings is a candidate once per such substring.
                found = np.unique(np.concatenate([near, found]))
        if not found.size:
            return []
        ids = self._ids[found].tolist()
        hits = [((k ^ bits).bit_count(), i) for k, i in zip(keys[found].tolist(), ids, strict=True) if i != _DEAD]
        hits.sort()
        return hits
