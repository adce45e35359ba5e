"""Two-tier result cache: an in-memory LRU in front of a persistent diskcache store.

Both tiers are looked up by perceptual key: the nearest stored key within `max_distance` bits whose colour
signature also matches. A memory miss that the disk holds is promoted to memory. Disk entries are namespaced
by the model file's SHA-256 and the hash algorithm, so a new model never serves an old model's answers.

diskcache is synchronous (SQLite), so the disk tier runs on one dedicated thread: its operations are
serialised in submission order, which also means `close()` runs after every write queued before it.
A disk cache that cannot be opened or fails later degrades to memory-only with a logged warning (recognition/disk.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from shelfsense.recognition.answer import Answer, Hit
from shelfsense.recognition.disk import DiskTier
from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.keystore import ColourMatch, KeyStore
from shelfsense.types import Prediction, Tier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CacheStatus:
    """What the service reports of the cache, read through the recognizer rather than its tiers' internals."""

    enabled: bool
    entries_memory: int = 0
    entries_disk: int = 0
    disk_available: bool = False
    disk_error: str | None = None
    disk_path: Path | None = None
    disk_retry_in_s: float | None = None  # after a failure: when the tier is tried again

    @property
    def mode(self) -> str:
        if not self.enabled:
            return "off"
        return "memory+disk" if self.disk_available else "memory"


class MemoryTier:
    """Bounded LRU of predictions by perceptual key. Used from the event loop thread only."""

    def __init__(self, max_entries: int, max_distance: int, colour_match: ColourMatch) -> None:
        self.max_entries = max_entries
        self._store = KeyStore(max_distance, colour_match)
        self._values: OrderedDict[int, Answer] = OrderedDict()
        self._hits: dict[int, int] = {}  # since the entry's last inference
        self._keys: dict[int, PerceptualKey] = {}  # the stored keys as objects: a hit hands its key out

    def lookup(self, key: PerceptualKey) -> Hit | None:
        for distance, item_id in self._store.nearest(key):
            self._values.move_to_end(item_id)
            self._hits[item_id] = hits = self._hits.get(item_id, 0) + 1
            answer = self._values[item_id]
            return Hit(answer.prediction, Tier.MEMORY, distance, self._keys[item_id], answer.inferences, hits)
        return None

    def get(self, key: PerceptualKey) -> Answer | None:
        """The answer stored under exactly this key, if it is still held."""
        item_id = self._store.find(key)
        return None if item_id is None else self._values[item_id]

    def put(self, key: PerceptualKey, answer: Answer) -> None:
        item_id = self._store.add(key)
        self._values[item_id] = answer
        self._values.move_to_end(item_id)
        self._hits[item_id] = 0
        self._keys[item_id] = key
        while len(self._values) > self.max_entries:
            old_id, _ = self._values.popitem(last=False)
            self._hits.pop(old_id, None)
            self._keys.pop(old_id, None)
            self._store.discard(old_id)

    def __len__(self) -> int:
        return len(self._values)


class ResultCache:
    """Memory, then disk: `await lookup(key)` gives a Hit or None; `store(key, prediction)` fills both tiers."""

    def __init__(self, memory: MemoryTier, disk: DiskTier | None = None) -> None:
        self.memory = memory
        self.disk = disk
        self._disk_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shelfsense-disk")
        self._writes: set[asyncio.Future] = set()
        self._loading: asyncio.Task | None = None

    async def open(self) -> None:
        """Open the disk tier; a large one goes on indexing its keys in the background, a batch a job."""
        if self.disk is not None:
            await asyncio.get_running_loop().run_in_executor(self._disk_thread, self.disk.open)
            if self.disk.loading and (self._loading is None or self._loading.done()):
                self._loading = asyncio.create_task(self._load_rest(), name="shelfsense-disk-index")

    async def _load_rest(self) -> None:
        # One batch per disk-thread job: lookups and writes queued meanwhile run between batches, so the first
        # frames wait ~0.1 s at most, not for the whole index (they may miss keys not indexed yet).
        loop = asyncio.get_running_loop()
        while self.disk is not None and await loop.run_in_executor(self._disk_thread, self.disk.load_step):
            pass

    def lookup_memory(self, key: PerceptualKey) -> Hit | None:
        return self.memory.lookup(key)

    async def lookup_disk(self, key: PerceptualKey) -> Hit | None:
        if self.disk is None:
            return None
        if not self.disk.available:
            if not self.disk.retry_due():
                return None
            await self.open()  # the backoff has passed: try the disk again
            if not self.disk.available:
                return None
        found = await asyncio.get_running_loop().run_in_executor(self._disk_thread, self.disk.lookup, key)
        if found is None:
            return None
        answer, distance, stored = found
        self.memory.put(stored, answer)
        return Hit(answer.prediction, Tier.DISK, distance, stored, answer.inferences)

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
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        if self.disk is not None:
            await asyncio.get_running_loop().run_in_executor(self._disk_thread, self.disk.close)
        self._disk_thread.shutdown(wait=True)
