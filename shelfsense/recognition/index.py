"""Near-duplicate lookup of 64-bit perceptual keys by Hamming distance: compact multi-index hashing in numpy.

The 64 bits are split into m contiguous substrings (4 of 16 bits, 3 from 750k keys: see default_chunks). If a
stored key is within distance d of the query, the per-substring distances add up to at most d, so with probe
radii r_i chosen such that sum(r_i + 1) = d + 1 at least one substring is within its r_i (pigeonhole). Each
table buckets the rows by the low `w` bits of its substring (w <= the substring's width); a key within r_i on
the whole substring is also within r_i on those w bits, so probing the w-bit values within r_i of the query's
finds a superset of the answers, which one popcount per candidate on the full key then makes exact.

Layout (why it is compact, and why a search reads little): keys and item ids live in two flat arrays, one row
per (key, id) pair, kept in table 0's bucket order, so table 0's buckets are runs of rows and need no row array.
Tables 1+ are CSR pairs: int32 row numbers ordered by bucket plus one int32 offset per bucket
(recognition.index_tables). Buckets are as wide as the offsets' share of 40 bytes a key allows: fewer rows a
bucket means fewer candidates, each a random read. At 1M keys and radius 8 that is three substrings (22, 21, 21
bits) bucketed by their low 20 bits: 3 x 211 probes find ~600 candidates, where four 16-bit substrings (188
probes of ~15 rows) found ~2,900; 8 + 8 + 2 x 4 + ~12.6 (offsets) = ~37 bytes a key.

Changes stay cheap: new rows are appended past the tabled ones and scanned linearly (a bounded insert buffer)
until merged into the tables (O(rows), no re-sorting); removals tombstone the row (id -1) and are dropped at
the next rebuild (radix argsorts, O(rows)).

Below `scan_limit` live keys no tables are built: one XOR + popcount over the packed keys is faster there
and needs no table memory (crossover measured by bench/bench_index.py, docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

from shelfsense.recognition.index_tables import Plan, Tables, bucket_bits, build, candidates_many, make_plan, merge

KEY_BITS = 64
MAX_SUPPORTED_DISTANCE = 32
# Live keys below which search scans instead of building tables (crossover in docs/benchmarks.md, section 2).
DEFAULT_SCAN_LIMIT = 16_000
_KEY_LIMIT = 1 << KEY_BITS
_ID_LIMIT = 1 << 63
_DEAD = -1  # item id of a tombstoned row
# 0, 1, 2, ... once for all searches: a search's ~600 candidate positions are offsets plus a prefix of it, and a
# slice costs nothing where np.arange allocates and fills (~0.5 us). 64 KB, above any radius-8 candidate count.
_IOTA = np.arange(8192)

# Four 16-bit substrings by default: at radius 8 a search probes 188 buckets (radii 2, 1, 1, 1). Buckets are at
# most 16 bits wide there, so from ~750k keys they hold ~12+ rows (1M keys: ~2,900 candidates, each a random
# read); three substrings (22, 21, 21 bits) then take over, with ~1 row a bucket (w = 20 at 1M keys): 3 x 211
# probes, ~600 candidates, ~25 % faster at 1M and ~20 % slower below ~500k (docs/benchmarks.md, section 2).
# Above radius 8 three substrings mean too many probes (radius 12: 3 x ~6,000).
_CHUNKS_BY_DISTANCE = {0: 1, 1: 2}
THREE_CHUNKS_FROM = 750_000
_MOST_FOR_THREE = 8


def default_chunks(max_distance: int, rows: int = 0) -> int:
    """Substring count for an index of `rows` live keys (0: the layout of an empty index)."""
    if max_distance in _CHUNKS_BY_DISTANCE:
        return _CHUNKS_BY_DISTANCE[max_distance]
    return 3 if max_distance <= _MOST_FOR_THREE and rows >= THREE_CHUNKS_FROM else 4


_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_bytes(x: np.ndarray) -> np.ndarray:
    """Per-element popcount of a uint64 array through a byte table (numpy < 2 has no bitwise_count)."""
    # The input's shape kept: search_many checks its insert buffer as a 2-D (query x row) array.
    return _BYTE_POP[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


# The tflite-runtime fallback environment pins numpy < 2.
_popcount = getattr(np, "bitwise_count", popcount_bytes)


def _check_bits(bits: int) -> None:
    if not isinstance(bits, int) or not 0 <= bits < _KEY_LIMIT:
        raise ValueError(f"key must be an int in [0, 2**64), got {bits!r}")


def _check_id(item_id: int) -> None:
    if isinstance(item_id, bool) or not isinstance(item_id, int) or not 0 <= item_id < _ID_LIMIT:
        raise ValueError(f"item id must be an int in [0, 2**63), got {item_id!r}")


class HammingIndex:
    """Near-duplicate lookup of 64-bit keys by Hamming distance; exact for every radius up to max_distance."""

    __slots__ = (
        "max_distance",
        "chunks",
        "_auto_chunks",
        "scan_limit",
        "buffer_limit",
        "_layout",
        "_shifts",
        "_keys",
        "_ids",
        "_n",
        "_tabled",
        "_count",
        "_dead",
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
        self._auto_chunks = chunks is None  # pick the substring count by size at each rebuild
        self.scan_limit = scan_limit
        # None: scale with the index (see _buffer_cap).
        self.buffer_limit = buffer_limit
        self._set_layout(m)
        self._keys = np.zeros(0, dtype=np.uint64)
        self._ids = np.zeros(0, dtype=np.int64)
        self._n = 0  # rows used in _keys/_ids
        self._tabled = 0  # rows [0, _tabled) are in the tables; [_tabled, _n) is the insert buffer
        self._count = 0  # live (key, id) pairs
        self._dead = 0  # tombstoned rows not yet compacted away
        self._w = 0  # bucket bits of the current tables
        self._rows = np.zeros(0, dtype=np.int32)  # tables 1+'s row numbers (layout: index_tables)
        # Bucket b of table t spans virtual positions [o[g], o[g + 1]), g = t << w | b: rows of _keys for table
        # 0; for the others, the positions modulo len(_rows) index _rows (index_tables).
        self._offsets = np.zeros(1, dtype=np.int32)
        self._plans: dict[int, Plan] = {}

    def _set_layout(self, m: int) -> None:
        # Substring i covers bits [shift, shift + width); widths differ by at most one. Only the first
        # max_distance + 1 substrings are ever probed (the others get r_i = -1), so only they get tables.
        base, extra = divmod(KEY_BITS, m)
        layout, shift = [], 0
        for i in range(m):
            width = base + (1 if i < extra else 0)
            layout.append((shift, width))
            shift += width
        self.chunks = m
        self._layout: tuple[tuple[int, int], ...] = tuple(layout[: min(m, self.max_distance + 1)])
        self._shifts = [shift for shift, _ in self._layout]

    def _target_chunks(self, rows: int) -> int:
        if not self._auto_chunks:
            return self.chunks
        if self.chunks == 3 and rows >= THREE_CHUNKS_FROM * 7 // 8:
            return 3  # some hysteresis: an index hovering at the switch does not alternate layouts
        return default_chunks(self.max_distance, rows)

    def __len__(self) -> int:
        """Number of (key, item id) pairs stored."""
        return self._count

    def __contains__(self, bits: object) -> bool:
        return isinstance(bits, int) and 0 <= bits < _KEY_LIMIT and self._find(bits).size > 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the index's arrays (keys, ids, tables, offsets, probe plans), slack included."""
        plans = sum(plan.nbytes for plan in self._plans.values())
        return self._keys.nbytes + self._ids.nbytes + self._rows.nbytes + self._offsets.nbytes + plans

    def _find(self, bits: int) -> np.ndarray:
        """Rows holding `bits` with a live id: the key's bucket in table 0 plus the insert buffer."""
        q = np.uint64(bits)
        found = (self._keys[self._tabled : self._n] == q).nonzero()[0]
        if found.size:
            found += self._tabled
        if self._tabled:
            b = (bits >> self._shifts[0]) & ((1 << self._w) - 1)
            lo, hi = self._offsets[b : b + 2].tolist()
            rows = lo + (self._keys[lo:hi] == q).nonzero()[0]
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
            # A rebuild when the index outgrew its bucket width (more offsets pay for themselves) or its
            # substring count; a shrinking index gets narrower buckets at its next compaction.
            if (
                self._tabled
                and self._bucket_bits(self._count) <= self._w
                and self._target_chunks(self._count) == self.chunks
            ):
                self._merge()
            else:
                self._rebuild(True)

    def _bucket_bits(self, rows: int) -> int:
        return bucket_bits(rows, min(width for _, width in self._layout), len(self._layout))

    def _merge(self) -> None:
        """Move the insert buffer into the tables (index_tables.merge: O(rows), no re-sorting of old rows)."""
        old = Tables(self._keys, self._ids, self._rows, self._offsets)
        new = merge(old, self._tabled, self._n, self._shifts, self._w, self._n + self._buffer_cap())
        self._keys, self._ids, self._rows, self._offsets = new
        self._tabled = self._n

    def _rebuild(self, tables: bool) -> None:
        """Drop tombstones and re-bucket every live row (radix argsorts: O(rows))."""
        live = self._ids[: self._n] != _DEAD
        keys, ids = self._keys[: self._n][live], self._ids[: self._n][live]
        n = keys.size
        self._n, self._dead, self._plans = n, 0, {}
        cap = n + self._buffer_cap()
        if tables and n:
            m = self._target_chunks(n)
            if m != self.chunks:
                self._set_layout(m)
            w = self._bucket_bits(n)
            self._keys, self._ids, self._rows, self._offsets = build(keys, ids, self._shifts, w, cap)
            self._tabled, self._w = n, w
            return
        self._keys = np.zeros(cap, dtype=np.uint64)
        self._ids = np.full(cap, _DEAD, dtype=np.int64)
        self._keys[:n], self._ids[:n] = keys, ids
        self._tabled, self._w = 0, 0
        self._rows, self._offsets = np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int32)

    def _plan(self, radius: int) -> Plan:
        plan = self._plans[radius] = make_plan(radius, self.chunks, len(self._layout), self._w)
        return plan

    def _radius(self, max_distance: int | None) -> int:
        radius = self.max_distance if max_distance is None else max_distance
        if isinstance(radius, bool) or not isinstance(radius, int) or not 0 <= radius <= self.max_distance:
            raise ValueError(
                f"search radius must be an int in 0..{self.max_distance} (the index's "
                f"max_distance), got {max_distance!r}"
            )
        return radius

    def search(self, bits: int, max_distance: int | None = None) -> list[tuple[int, int]]:
        """[(distance, item_id)] of stored keys within max_distance, nearest first (ties by item id)."""
        if not isinstance(bits, int) or not 0 <= bits < _KEY_LIMIT:  # inline: a call costs ~0.1 us a search
            _check_bits(bits)
        radius = self.max_distance if max_distance is None else self._radius(max_distance)
        keys = self._keys
        first, near = 0, None  # rows [first, n) are scanned: all of them without tables, else the insert buffer
        if self._tabled:
            plan = self._plans.get(radius) or self._plan(radius)
            mask = (1 << self._w) - 1
            # Bucket b of table t is offset index t << w | b; the plan's flips carry the t << w part.
            probes = np.array([(bits >> shift) & mask for shift in self._shifts]).repeat(plan.counts)
            probes ^= plan.flips
            # take instead of indexing, and mode "clip" instead of "raise", each saved ~1 us a search in A/Bs at
            # 1M keys; every probe and candidate position is in range by construction.
            offsets = self._offsets
            ends = offsets[1:].take(probes, mode="clip")
            lens = np.subtract(ends, offsets.take(probes, mode="clip"), dtype=np.intp)  # intp: faster repeat
            out_end = lens.cumsum()
            total = out_end.item(-1)
            if total <= self._tabled // 2:  # else a large radius over a small index: the scan reads fewer rows
                first = self._tabled
                # Positions of every probed bucket, concatenated: bucket j's span [start, end) fills [out_end -
                # len, out_end) of the output, so output k of it is k + (end - out_end).
                pos = (ends - out_end).repeat(lens)
                pos += _IOTA[:total] if total <= _IOTA.size else np.arange(total)
                head = out_end.item(plan.first - 1)  # positions [0, head) come from table 0: rows already
                if head < total:
                    tail = pos[head:]
                    tail[:] = self._rows.take(tail, mode="wrap")  # virtual positions modulo len(rows)
                found = keys.take(pos, mode="clip")
                found ^= np.uint64(bits)
                near = pos.compress(_popcount(found) <= radius)
        if first < self._n:  # the buffer is empty right after a merge: skip four calls
            found = first + (_popcount(keys[first : self._n] ^ np.uint64(bits)) <= radius).nonzero()[0]
            near = found if near is None else np.concatenate([near, found])
        if near is None or not near.size:
            return []
        # Keyed by row: a key near the query in several substrings is a candidate once per such table.
        rows = near.tolist()
        if len(rows) <= 16:  # the usual few hits: item by item costs less than three gathers and conversions
            ids = self._ids
            return sorted(((keys.item(r) ^ bits).bit_count(), i) for r in set(rows) if (i := ids.item(r)) != _DEAD)
        hits = {
            r: ((k ^ bits).bit_count(), i)
            for r, k, i in zip(rows, keys.take(near).tolist(), self._ids.take(near).tolist(), strict=True)
            if i != _DEAD
        }
        return sorted(hits.values())

    def search_many(self, keys: list[int], max_distance: int | None = None) -> list[list[tuple[int, int]]]:
        """[search(key, max_distance) for key in keys], in one pass over the tables (e.g. a frame's slots)."""
        for bits in keys:
            _check_bits(bits)
        radius = self._radius(max_distance)
        found = None
        if self._tabled and len(keys) > 1:
            plan = self._plans.get(radius) or self._plan(radius)
            mask = (1 << self._w) - 1
            subs = np.array([[(bits >> shift) & mask for shift in self._shifts] for bits in keys])
            found = candidates_many(self._offsets, self._rows, self._tabled, plan, subs)
        if found is None:
            return [self.search(bits, radius) for bits in keys]
        query, pos = found
        qs = np.array(keys, dtype=np.uint64)
        near = (_popcount(self._keys[pos] ^ qs[query]) <= radius).nonzero()[0]
        query, pos = query[near], pos[near]
        if self._tabled < self._n:  # the insert buffer, against every query
            q_buf, row = (_popcount(self._keys[None, self._tabled : self._n] ^ qs[:, None]) <= radius).nonzero()
            query, pos = np.concatenate([query, q_buf]), np.concatenate([pos, row + self._tabled])
        hits: list[dict[int, tuple[int, int]]] = [{} for _ in keys]
        rows = pos.tolist()
        ids, stored = self._ids[rows].tolist(), self._keys[rows].tolist()
        for q, row, k, i in zip(query.tolist(), rows, stored, ids, strict=True):
            if i != _DEAD:
                hits[q][row] = ((k ^ keys[q]).bit_count(), i)  # keyed by row: found through two tables, once
        return [sorted(h.values()) for h in hits]
