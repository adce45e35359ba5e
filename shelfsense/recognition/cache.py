"""Two-tier result cache: an in-memory LRU in front of a persistent diskcache store.

Both tiers are looked up by perceptual key: the nearest stored key within `max_distance` bits whose colour
signature also matches. A memory miss that the disk holds is promoted to memory. Disk entries are namespaced
by the model file's SHA-256 and the hash algorithm, so a new model never serves an old model's answers.

diskcache is synchronous (SQLite), so the disk tier runs on one dedicated thread: its operations are
serialised in submission order, which also means `close()` runs after every write queued before it.
A disk cache that cannot be opened or fails later degrades to memory-only with a logged warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import diskcache

from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.index import HammingIndex
from shelfsense.types import Prediction, Tier

log = logging.getLogger(__name__)

ColourMatch = Callable[[bytes, bytes], bool]


@dataclass(frozen=True, slots=True)
class Answer:
    """A cached prediction and the number of fresh inferences whose scores it averages."""

    prediction: Prediction
    inferences: int = 1

    def merged(self, fresh: Prediction) -> Answer:
        """The running average with one more inference (labels outside a top-k count as score 0)."""
        n = self.inferences
        scores: dict[str, float] = {}
        for label, score in self.prediction:
            scores[label] = score * n
        for label, score in fresh:
            scores[label] = scores.get(label, 0.0) + score
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])[: max(len(self.prediction), len(fresh))]
        return Answer([(label, round(total / (n + 1), 4)) for label, total in ranked], n + 1)


@dataclass(frozen=True, slots=True)
class Hit:
    prediction: Prediction
    tier: Tier  # MEMORY or DISK
    distance: int
    key: PerceptualKey  # the stored key that answered
    inferences: int  # fresh inferences behind the answer
    hits: int = 0  # hits of this answer since its last inference (memory tier)


class _KeyedStore:
    """Entries by id plus a Hamming index over their keys: the lookup shared by both tiers."""

    def __init__(self, max_distance: int, colour_match: ColourMatch) -> None:
        self.max_distance = max_distance
        self.colour_match = colour_match
        self.index = HammingIndex(max_distance)
        self.keys: dict[int, PerceptualKey] = {}
        self.ids: dict[PerceptualKey, int] = {}
        self._next_id = 0

    def nearest(self, key: PerceptualKey) -> list[tuple[int, int]]:
        """(distance, id) of stored keys within radius whose colour matches, nearest first."""
        return [(d, i) for d, i in self.index.search(key.bits) if self.colour_match(self.keys[i].colour, key.colour)]

    def add(self, key: PerceptualKey) -> int:
        if key in self.ids:
            return self.ids[key]
        item_id = self._next_id
        self._next_id += 1
        self.keys[item_id] = key
        self.ids[key] = item_id
        self.index.add(key.bits, item_id)
        return item_id

    def discard(self, item_id: int) -> None:
        key = self.keys.pop(item_id, None)
        if key is not None:
            del self.ids[key]
            self.index.remove(key.bits, item_id)

    def __len__(self) -> int:
        return len(self.keys)


class MemoryTier:
    """Bounded LRU of predictions by perceptual key. Used from the event loop thread only."""

    def __init__(self, max_entries: int, max_distance: int, colour_match: ColourMatch) -> None:
        self.max_entries = max_entries
        self._store = _KeyedStore(max_distance, colour_match)
        self._values: OrderedDict[int, Answer] = OrderedDict()
        self._hits: dict[int, int] = {}  # since the entry's last inference

    def lookup(self, key: PerceptualKey) -> tuple[Answer, int, PerceptualKey, int] | None:
        for distance, item_id in self._store.nearest(key):
            self._values.move_to_end(item_id)
            self._hits[item_id] = hits = self._hits.get(item_id, 0) + 1
            return self._values[item_id], distance, self._store.keys[item_id], hits
        return None

    def get(self, key: PerceptualKey) -> Answer | None:
        """The answer stored under exactly this key, if it is still held."""
        item_id = self._store.ids.get(key)
        return None if item_id is None else self._values[item_id]

    def put(self, key: PerceptualKey, answer: Answer) -> None:
        item_id = self._store.add(key)
        self._values[item_id] = answer
        self._values.move_to_end(item_id)
        self._hits[item_id] = 0
        while len(self._values) > self.max_entries:
            old_id, _ = self._values.popitem(last=False)
            self._hits.pop(old_id, None)
            self._store.discard(old_id)

    def __len__(self) -> int:
        return len(self._values)


class DiskTier:
    """Persistent predictions in a diskcache.Cache; every method is blocking and runs on the disk thread."""

    def __init__(
        self, path: Path, size_limit: int, namespace: str, max_distance: int, colour_match: ColourMatch
    ) -> None:
        self.path = path
        self.size_limit = size_limit
        self.namespace = namespace
        self._store = _KeyedStore(max_distance, colour_match)
        self._cache: diskcache.Cache | None = None
        self.error: str | None = "not opened"

    @property
    def available(self) -> bool:
        return self._cache is not None

    def _name(self, key: PerceptualKey) -> str:
        return f"{self.namespace}:{key.bits:016x}:{key.colour.hex()}"

    def open(self) -> None:
        """Open the store and index this namespace's keys; on failure stay closed and say why."""
        try:
            if self.path.exists() and not self.path.is_dir():
                raise NotADirectoryError(f"cache.disk_path {self.path} is a file, not a folder")
            self.path.mkdir(parents=True, exist_ok=True)
            cache = diskcache.Cache(str(self.path), size_limit=self.size_limit)
            prefix = self.namespace + ":"
            for name in cache.iterkeys():
                if isinstance(name, str) and name.startswith(prefix):
                    _, bits, colour = name.split(":")
                    self._store.add(PerceptualKey(int(bits, 16), bytes.fromhex(colour)))
        except (OSError, sqlite3.Error, ValueError) as exc:
            self._fail("open", exc)
            return
        self._cache = cache
        self.error = None
        log.info("disk cache %s: %d entries for this model", self.path, len(self._store))

    def _fail(self, what: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, PermissionError) or "unable to open database file" in str(exc):
            reason += f" (can this user create and write files in {self.path}?)"
        self.error = f"{what} failed: {reason}"
        log.warning("disk cache at %s unusable (%s); continuing with the memory cache only", self.path, self.error)
        if self._cache is not None:
            with contextlib.suppress(Exception):  # already failing; closing is best effort
                self._cache.close()
        self._cache = None

    def lookup(self, key: PerceptualKey) -> tuple[Answer, int, PerceptualKey] | None:
        if self._cache is None:
            return None
        try:
            for distance, item_id in self._store.nearest(key):
                stored = self._store.keys[item_id]
                value = self._cache.get(self._name(stored))
                if value is None:  # evicted by diskcache's size limit since we indexed it
                    self._store.discard(item_id)
                    continue
                prediction, inferences = value  # plain tuples on disk: no pickled classes to outlive
                return Answer(prediction, inferences), distance, stored
        except (OSError, sqlite3.Error) as exc:
            self._fail("read", exc)
        return None

    def put(self, key: PerceptualKey, answer: Answer) -> None:
        if self._cache is None:
            return
        try:
            self._cache.set(self._name(key), (answer.prediction, answer.inferences))
            self._store.add(key)
        except (OSError, sqlite3.Error) as exc:
            self._fail("write", exc)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
            self.error = "closed"

    def __len__(self) -> int:
        return len(self._store) if self._cache is not None else 0


class ResultCache:
    """Memory, then disk: `await lookup(key)` gives a Hit or None; `store(key, prediction)` fills both tiers."""

    def __init__(self, memory: MemoryTier, disk: DiskTier | None = None) -> None:
        self.memory = memory
        self.disk = disk
        self._disk_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfsense-disk")
        self._writes: set[asyncio.Future] = set()

    async def open(self) -> None:
        if self.disk is not None:
            await asyncio.get_running_loop().run_in_executor(self._disk_thread, self.disk.open)

    def lookup_memory(self, key: PerceptualKey) -> Hit | None:
        found = self.memory.lookup(key)
        if found is None:
            return None
        answer, distance, stored, hits = found
        return Hit(answer.prediction, Tier.MEMORY, distance, stored, answer.inferences, hits)

    async def lookup_disk(self, key: PerceptualKey) -> Hit | None:
        if self.disk is None or not self.disk.available:
            return None
        found = await asyncio.get_running_loop().run_in_executor(self._disk_thread, self.disk.lookup, key)
        if found is None:
            return None
        answer, distance, stored = found
        self.memory.put(stored, answer)
        return Hit(answer.prediction, Tier.DISK, distance, stored, answer.inferences)

    async def lookup(self, key: PerceptualKey) -> Hit | None:
        return self.lookup_memory(key) or await self.lookup_disk(key)

    def store(self, key: PerceptualKey, prediction: Prediction) -> None:
        """A fresh inference: memory now, the disk write queued on the disk thread (off the frame's path)."""
        self._put(key, Answer(prediction))

    def confirm(self, key: PerceptualKey, fresh: Prediction) -> Answer | None:
        """Average one more inference into the answer stored under `key` (None if it was evicted meanwhile)."""
        answer = self.memory.get(key)
        if answer is None:
            return None
        answer = answer.merged(fresh)
        self._put(key, answer)
        return answer

    def _put(self, key: PerceptualKey, answer: Answer) -> None:
        self.memory.put(key, answer)
        if self.disk is not None and self.disk.available:
            future = asyncio.get_running_loop().run_in_executor(self._disk_thread, self.disk.put, key, answer)
            self._writes.add(future)
            future.add_done_callback(self._writes.discard)

    @property
    def entries_memory(self) -> int:
        return len(self.memory)

    @property
    def entries_disk(self) -> int:
        return len(self.disk) if self.disk is not None else 0

    async def close(self) -> None:
        """Finish queued disk writes, then close the store."""
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.disk is not None:
            await asyncio.get_running_loop().run_in_executor(self._disk_thread, self.disk.close)
        self._disk_thread.shutdown(wait=True)
