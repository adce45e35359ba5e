"""The CSR tables behind recognition.index.HammingIndex: bucket widths, probe plans, builds and merges.

Layout. Rows (key, id pairs) live in two flat arrays, `keys` and `ids`, and the tabled rows [0, n) are kept in
table 0's bucket order at all times, so table 0 needs no row array: its bucket b is the run of rows
[offsets[b], offsets[b + 1]). Tables 1..T-1 are CSR pairs: int32 row numbers in bucket order (`rows`) and
offsets. One `offsets` array covers all tables, bucket b of table t at index t << w | b, in "virtual" positions
where table t starts at t * n: one cumsum builds it, and a merge adds to it without re-sorting. `rows` holds table
t's row numbers at [t * n, (t + 1) * n) except the last table's, which come first, at [0, n): virtual positions
of tables 1+ then index `rows` modulo its length, which `rows.take(positions, mode="wrap")` applies for free
(a subtraction would be one more numpy call a search).
"""

from __future__ import annotations

from functools import cache
from itertools import combinations
from typing import NamedTuple

import numpy as np


# A key may cost 40 bytes all included: 8 (key) + 8 (id) + 4 a row array (tables 1+), ~3 of slack (insert
# buffer, tombstones up to a 16th of the rows), and the offsets get the rest: 4 * tables * 2**w <=
# offset_bytes(tables) * rows. At three tables that is 13 bytes a row, 2**w up to ~1.08 rows, about one row a
# bucket (1M keys: w = 20, 12.6 bytes a key). Fewer rows a bucket means fewer candidates, each a random read of
# a row number and a key.
def offset_bytes(tables: int) -> int:
    return max(2, 21 - 4 * (tables - 1))


# Above 24 bits the offsets alone would pass 64 MB a table; the key split never needs it at sizes we serve.
MAX_BUCKET_BITS = 24


def bucket_bits(rows: int, widest: int, tables: int) -> int:
    """Bucket bits of the tables for `rows` rows: as many as the offsets budget allows, <= the narrowest substring."""
    budget = rows * offset_bytes(tables) // (4 * tables)
    return max(1, min(widest, MAX_BUCKET_BITS, budget.bit_length() - 1))


@cache
def flips(width: int, radius: int) -> np.ndarray:
    """Every mask of `width` bits with at most `radius` bits set, fewest bits first."""
    masks = [0]
    for r in range(1, min(radius, width) + 1):
        for positions in combinations(range(width), r):
            masks.append(sum(1 << p for p in positions))
    return np.array(masks, dtype=np.int64)


class Plan(NamedTuple):
    """The probes of one search radius over the current tables: bucket index = start[table] ^ flip."""

    tables: np.ndarray  # table of each probe (intp, ascending)
    flips: np.ndarray  # flip mask of each probe, with the table's t << w part already in place
    first: int  # probes [0, first) are table 0's, whose positions are rows; the others index `rows`
    # Probes in each table, for `np.repeat` of the query's substrings: an int when every table has as many
    # (radius 8 over three: 211 each), which numpy repeats faster than a fancy index by `tables` (~0.7 us).
    counts: int | np.ndarray

    @property
    def nbytes(self) -> int:
        return self.tables.nbytes + self.flips.nbytes + np.asarray(self.counts).nbytes


def make_plan(radius: int, chunks: int, tables: int, w: int) -> Plan:
    """Probe radii r_t with sum(r_t + 1) = radius + 1 over the m substrings (pigeonhole), r_t = -1 not probed."""
    base, extra = divmod(radius + 1, chunks)
    table_of, masks = [], []
    for t in range(tables):
        r = base - 1 + (1 if t < extra else 0)
        if r < 0:
            break  # r_t = -1: this substring need not be probed at all
        f = flips(w, r)
        table_of.append(np.full(f.size, t, dtype=np.intp))
        masks.append(f | (t << w))
    counts = [f.size for f in masks] + [0] * (tables - len(masks))  # 0: a substring this radius need not probe
    same = all(c == counts[0] for c in counts)
    return Plan(np.concatenate(table_of), np.concatenate(masks), counts[0], counts[0] if same else np.array(counts))


def _sub(keys: np.ndarray, shift: int, w: int) -> np.ndarray:
    sub = (keys >> np.uint64(shift)) & np.uint64((1 << w) - 1)
    return sub.astype(np.uint16 if w <= 16 else np.uint32)


def _stable_order(sub: np.ndarray) -> np.ndarray:
    """Stable argsort of bucket numbers in O(rows): numpy radix-sorts 16-bit keys but merge-sorts 32-bit ones,
    so a wider bucket is sorted by its low 16 bits, then (stably) by the rest."""
    if sub.dtype == np.uint16:
        return np.argsort(sub, kind="stable")
    order = np.argsort((sub & 0xFFFF).astype(np.uint16), kind="stable")
    return order[np.argsort((sub[order] >> 16).astype(np.uint16), kind="stable")]


class Tables(NamedTuple):
    keys: np.ndarray  # rows in table 0's bucket order, then `cap - n` free rows
    ids: np.ndarray
    rows: np.ndarray  # int32, tables 1..T-1
    offsets: np.ndarray  # int32, (T << w) + 1 virtual positions


def build(keys: np.ndarray, ids: np.ndarray, shifts: list[int], w: int, cap: int) -> Tables:
    """Tables over live rows `keys`/`ids` (re-ordered by table 0's bucket), in arrays of `cap` rows."""
    n, t_count = keys.size, len(shifts)
    order = _stable_order(_sub(keys, shifts[0], w))
    out_keys = np.zeros(cap, dtype=np.uint64)
    out_ids = np.full(cap, -1, dtype=np.int64)
    out_keys[:n], out_ids[:n] = keys[order], ids[order]
    rows = np.empty((t_count - 1) * n, dtype=np.int32)
    counts = np.empty(t_count << w, dtype=np.int32)
    for t, shift in enumerate(shifts):
        sub = _sub(out_keys[:n], shift, w)
        if t:
            seg = t % (t_count - 1)  # the last table's rows first (see the module docstring)
            rows[seg * n : (seg + 1) * n] = _stable_order(sub)
        counts[t << w : (t + 1) << w] = np.bincount(sub, minlength=1 << w)
    # One cumsum over the concatenated counts lands table t's buckets t * n rows on (virtual positions).
    # int32 halves the offsets (fine below 2**31 rows over all tables).
    offsets = np.zeros((t_count << w) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return Tables(out_keys, out_ids, rows, offsets)


def merge(old: Tables, n_old: int, n: int, shifts: list[int], w: int, cap: int) -> Tables:
    """Move rows [n_old, n) (the insert buffer) into the tables, O(rows) without re-sorting the tabled rows.

    New rows are inserted into table 0's order at the end of their buckets, which moves every later row: the
    row numbers in tables 1+ are renumbered through one gather, then the new rows are inserted there too.
    """
    t_count, k = len(shifts), n - n_old
    fresh = old.keys[n_old:n]
    bucket = np.concatenate([_sub(fresh, s, w).astype(np.int64) | (t << w) for t, s in enumerate(shifts)])
    order = np.argsort(bucket, kind="stable")  # ascending table, then bucket, then row
    bucket = bucket[order]
    # Table 0: new row order[j] (j < k) goes before old row at[j], i.e. to position at[j] + j.
    at = old.offsets[bucket[:k] + 1]
    placed = at + np.arange(k)
    # Old row r moves by the number of new rows placed before it, j on [at[j - 1], at[j]): one repeat.
    moved = np.arange(n_old, dtype=np.int32)
    moved += np.arange(k + 1, dtype=np.int32).repeat(np.diff(at, prepend=0, append=n_old))
    keys = np.zeros(cap, dtype=np.uint64)
    ids = np.full(cap, -1, dtype=np.int64)
    old_rows = np.ones(n, dtype=bool)  # a mask copies the old rows ~2x faster than scattering them by `moved`
    old_rows[placed] = False
    keys[:n][old_rows], ids[:n][old_rows] = old.keys[:n_old], old.ids[:n_old]
    keys[placed], ids[placed] = fresh[order[:k]], old.ids[n_old:n][order[:k]]
    rows = old.rows
    if t_count > 1:
        new_row = np.empty(k, dtype=np.int32)
        new_row[order[:k]] = placed
        # Positions index the old `rows`: the virtual position, less (T - 1) * n_old in the last table (it comes
        # first). np.insert keeps the given order among rows inserted at one position, so each new row lands at
        # the end of its bucket.
        at_rows = old.offsets[bucket[k:] + 1]
        at_rows[bucket[k:] >> w == t_count - 1] -= (t_count - 1) * n_old
        rows = np.insert(moved[rows], at_rows, new_row[order[k:] % k])
    # Offset i grows by the number of new entries in buckets below i: j on (bucket[j - 1], bucket[j]].
    offsets = old.offsets
    grow = np.diff(bucket + 1, prepend=0, append=offsets.size)
    offsets += np.arange(bucket.size + 1, dtype=np.int32).repeat(grow)
    return Tables(keys, ids, rows, offsets)


def candidates_many(
    offsets: np.ndarray, rows: np.ndarray, n: int, plan: Plan, subs: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(query, row) of every candidate of several queries at once, `subs` their substrings (queries x tables);
    None when there are more candidates than half the rows a query (a scan is cheaper).

    The same steps as one search over all the queries' probes concatenated: per frame, one set of numpy calls
    instead of one a slot (each call costs about a microsecond whatever its length).
    """
    probes = subs[:, plan.tables]
    probes ^= plan.flips
    probes = probes.ravel()
    ends = offsets[1:][probes]
    lens = np.subtract(ends, offsets[probes], dtype=np.intp)
    out_end = lens.cumsum()
    total = int(out_end[-1])
    if total > subs.shape[0] * (n // 2):
        return None
    pos = (ends - out_end).repeat(lens)
    pos += np.arange(total)
    far = (pos >= n).nonzero()[0]  # tables 1+: virtual positions from n on, row numbers in `rows`
    pos[far] = rows.take(pos[far], mode="wrap")
    per_query = np.diff(out_end[plan.tables.size - 1 :: plan.tables.size], prepend=0)
    return np.arange(subs.shape[0]).repeat(per_query), pos
