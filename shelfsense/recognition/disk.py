"""The disk tier: predictions in a diskcache store, indexed by perceptual key, bounded in entries and bytes.

diskcache is synchronous (SQLite): every method here is blocking and runs on the cache's one disk thread.
A store that cannot be opened, or fails later, leaves the tier off with a logged reason; it is reopened after a
backoff (doubling from `retry_s` up to 5 minutes), so a disk that comes back is used again without a restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sqlite3
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import diskcache
import numpy as np

from shelfsense.recognition.answer import Answer
from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.keystore import COLOUR_BYTES, ColourMatch, KeyStore

__all__ = ["DiskTier", "parse_names"]

log = logging.getLogger(__name__)

_PUT_ORDER = 1 << 40  # keys stored by this process are newer than any found on disk at start
_LOAD_BATCH = 20_000  # keys indexed per disk-thread job while loading (~0.1 s), so frames interleave


def parse_names(names: list[str], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(bits, colours) of the names `<prefix><16 hex>:<colour hex>` among `names`; others are skipped.

    Vectorised: parsing a million names one int() and bytes.fromhex() at a time took ~1 s of the open.
    """
    width = len(prefix) + 17 + 2 * COLOUR_BYTES
    ours = [n[len(prefix) :] for n in names if isinstance(n, str) and len(n) == width and n.startswith(prefix)]
    # "replace" keeps one byte a character, so a stray non-ASCII name keeps its row width and fails the check.
    raw = np.frombuffer("".join(ours).encode("ascii", "replace"), dtype=np.uint8).reshape(
        len(ours), width - len(prefix)
    )
    nibbles = _HEX[raw]
    good = (nibbles[:, 16] == _COLON) & (np.delete(nibbles, 16, axis=1) < 16).all(axis=1)
    nibbles = nibbles[good].astype(np.uint64)
    bits = np.zeros(len(nibbles), dtype=np.uint64)
    for i in range(16):
        bits = (bits << np.uint64(4)) | nibbles[:, i]
    colours = (nibbles[:, 17::2] * 16 + nibbles[:, 18::2]).astype(np.uint8)
    return bits, colours


_COLON = 254
_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
_HEX[ord(":")] = _COLON


def _release_free_heap() -> None:
    """Give the allocator's free memory back to the OS (glibc only; a no-op elsewhere).

    Indexing a million keys frees many large temporaries; glibc's adaptive mmap threshold keeps later ones on
    the heap, and it held ~55 MiB of freed memory resident after the load (measured: 345 -> 287 MiB RSS).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class DiskTier:
    """Persistent predictions in a diskcache.Cache; every method is blocking and runs on the disk thread.

    At most `max_entries` entries are kept: beyond that the least recently stored are deleted from diskcache
    and the index together, so the index is bounded by the tier, not by every miss ever made. diskcache's own
    byte budget may evict earlier; a lookup that lands on such an entry forgets it, and it is among the
    oldest, so the next eviction batch drops it anyway.
    """

    def __init__(
        self,
        path: Path,
        size_limit: int,
        namespace: str,
        max_distance: int,
        colour_match: ColourMatch,
        max_entries: int = 600_000,
        retry_s: float = 5.0,
    ) -> None:
        self.path = path
        self.size_limit = size_limit
        self.namespace = namespace
        self.max_entries = max_entries
        self._store = KeyStore(max_distance, colour_match)
        self._cache: diskcache.Cache | None = None
        self._loader: Iterator[None] | None = None
        self._put_during_load: set[int] = set()  # bits stored while loading: the loader must not re-add them
        self._orders = 0
        self.error: str | None = "not opened"
        self._retry_s = retry_s
        self._backoff = retry_s
        self.retry_at: float | None = None  # monotonic time of the next attempt to reopen after a failure
        self._closed = False

    @property
    def available(self) -> bool:
        return self._cache is not None

    @property
    def loading(self) -> bool:
        return self._loader is not None

    def _name(self, key: PerceptualKey) -> str:
        return f"{self.namespace}:{key.bits:016x}:{key.colour.hex()}"

    def open(self) -> None:
        """Open the store and index the first batch of keys; `load_step` indexes the rest, a batch a call."""
        try:
            if self.path.exists() and not self.path.is_dir():
                raise NotADirectoryError(f"cache.disk_path {self.path} is a file, not a folder")
            self.path.mkdir(parents=True, exist_ok=True)
            # SQLite's defaults here (64 MiB memory-mapped, 32 MiB page cache) kept ~100 MiB of the database
            # resident after the start-up scan of a million keys; lookups are point reads that the OS page cache
            # serves as well, so keep 4 MiB of interior pages and let the kernel decide about the rest.
            # disk_bytes covers SQLite's write-ahead log too: diskcache counts only the database and its files, so
            # the log gets a slice of the budget, and SQLite checkpoints and truncates it within that slice.
            wal = min(self.size_limit // 8, 16 * 1024 * 1024)
            self._cache = diskcache.Cache(
                str(self.path),
                size_limit=self.size_limit - wal,
                sqlite_mmap_size=0,
                sqlite_cache_size=1024,
                sqlite_journal_size_limit=wal,
                sqlite_wal_autocheckpoint=max(16, wal // 4096 // 2),
            )
        except (OSError, sqlite3.Error, ValueError) as exc:
            self._fail("open", exc)
            return
        if self.retry_at is not None:
            log.info("disk cache at %s is back after: %s", self.path, self.error)
        self.error = None
        self.retry_at = None
        self._backoff = self._retry_s
        self._loader = self._load(self._cache)
        self.load_step()  # a small cache is fully indexed when open() returns

    def load_step(self) -> bool:
        """Index the next batch of stored keys; False once every key is indexed (or the tier failed)."""
        if self._loader is None:
            return False
        try:
            next(self._loader)
            return True
        except StopIteration:
            pass
        except (OSError, sqlite3.Error) as exc:
            self._fail("open", exc)
        self._loader = None
        self._put_during_load.clear()
        return False

    def _load(self, cache: diskcache.Cache) -> Iterator[None]:
        """Index this namespace's keys in diskcache's insertion order (rowid), which is also their age."""
        started, prefix, names = time.perf_counter(), self.namespace + ":", iter(cache)
        self._store.reserve(min(len(cache), self.max_entries))  # other namespaces' entries count too: a bound
        while batch := list(islice(names, _LOAD_BATCH)):
            bits, colours = parse_names(batch, prefix)
            order = np.arange(self._orders, self._orders + bits.size, dtype=np.int64)
            self._orders += bits.size
            if self._put_during_load:  # stored since open(): already indexed under a newer order
                seen = np.isin(bits, np.fromiter(self._put_during_load, dtype=np.uint64))
                for i in np.flatnonzero(seen):
                    if self._store.find(PerceptualKey(int(bits[i]), colours[i].tobytes())) is not None:
                        order[i] = -1
                keep = order >= 0
                bits, colours, order = bits[keep], colours[keep], order[keep]
            overflow = bits.size - self.max_entries
            if overflow > 0:  # this batch alone overfills the tier (the bound was lowered): its oldest go now
                old = zip(bits[:overflow].tolist(), colours[:overflow], strict=True)
                self._delete([PerceptualKey(b, c.tobytes()) for b, c in old])
                bits, colours, order = bits[overflow:], colours[overflow:], order[overflow:]
            self._make_room(bits.size)
            self._store.add_many(bits, colours, order)
            yield
        _release_free_heap()
        log.info(
            "disk cache %s: %d entries for this model, indexed in %.1f s",
            self.path,
            len(self._store),
            time.perf_counter() - started,
        )

    def _make_room(self, incoming: int) -> None:
        """Delete the least recently stored entries so that `incoming` more keep the tier within its bound."""
        excess = len(self._store) + incoming - self.max_entries
        if excess <= 0 or self._cache is None:
            return
        # Evict a batch (1/256 of the bound) at a time: one selection pass and one transaction per batch.
        slots = self._store.oldest(max(excess, min(self.max_entries // 256, len(self._store)))).tolist()
        self._delete([self._store.key(s) for s in slots])
        for s in slots:
            self._store.discard(s)

    def _delete(self, keys: list[PerceptualKey]) -> None:
        assert self._cache is not None
        with self._cache.transact():  # one commit for the batch, not one a key
            for key in keys:
                self._cache.delete(self._name(key))

    def _fail(self, what: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, PermissionError) or "unable to open database file" in str(exc):
            reason += f" (can this user create and write files in {self.path}?)"
        self.error = f"{what} failed: {reason}"
        self.retry_at = time.monotonic() + self._backoff
        log.warning(
            "disk cache at %s unusable (%s); continuing with the memory cache only, retrying in %.0f s",
            self.path,
            self.error,
            self._backoff,
        )
        self._backoff = min(self._backoff * 2, 300.0)
        if self._cache is not None:
            with contextlib.suppress(Exception):  # already failing; closing is best effort
                self._cache.close()
        self._cache = None
        self._loader = None

    def lookup(self, key: PerceptualKey) -> tuple[Answer, int, PerceptualKey] | None:
        if self._cache is None:
            return None
        try:
            for distance, slot in self._store.nearest(key):
                stored = self._store.key(slot)
                value = self._cache.get(self._name(stored))
                if value is None:  # evicted by diskcache's size limit since we indexed it
                    self._store.discard(slot)
                    continue
                prediction, inferences = value  # plain tuples on disk: no pickled classes to outlive
                return Answer(prediction, inferences), distance, stored
        except (OSError, sqlite3.Error) as exc:
            self._fail("read", exc)
        return None

    def put(self, key: PerceptualKey, answer: Answer) -> None:
        if self._cache is None or len(key.colour) != COLOUR_BYTES:
            return
        try:
            self._cache.set(self._name(key), (answer.prediction, answer.inferences))
            order = _PUT_ORDER + self._orders
            self._orders += 1
            slot = self._store.find(key)
            if slot is not None:
                self._store.touch(slot, order)  # diskcache re-dates a re-stored entry: so do we
                return
            self._make_room(1)
            self._store.add(key, order)
            if self._loader is not None:
                self._put_during_load.add(key.bits)
        except (OSError, sqlite3.Error) as exc:
            self._fail("write", exc)

    def retry_due(self) -> bool:
        """True when the tier failed and its backoff has passed: the next disk-thread job may reopen it."""
        return not self._closed and self.retry_at is not None and time.monotonic() >= self.retry_at

    def close(self) -> None:
        self._closed = True
        self._loader = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
            self.error = "closed"

    def __len__(self) -> int:
        return len(self._store) if self._cache is not None else 0
