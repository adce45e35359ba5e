"""Perceptual keys of a cache tier in flat numpy arrays, looked up through a compact Hamming index.

Split from cache.py (which uses it for both tiers) to keep that module readable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from shelfsense.recognition.hashing import COLOUR_GRID, PerceptualKey
from shelfsense.recognition.index import HammingIndex

ColourMatch = Callable[[bytes, bytes], bool]

COLOUR_BYTES = 3 * COLOUR_GRID**2  # the colour signature's length (L, a, b per cell)
_FREE = np.iinfo(np.int64).max  # store order of an unused slot: never the oldest
# nearest() answers a KeyStore remembers until its keys change (see there): a fixed camera's slots ask the same
# few keys frame after frame, so a few per slot are plenty; past the cap the table starts over (~200 B each).
NEAR_MEMO = 16_384


class KeyStore:
    """Keys in flat arrays (item id = slot) plus a Hamming index over them: the lookup shared by both tiers.

    Each slot also has a store order, by which the disk tier evicts. A dict of PerceptualKey objects cost ~300
    bytes a key; here a key costs 8 (bits) + 27 (colour) + 8 (order) bytes plus ~33 in the index: ~80 MB for
    a million entries.
    """

    def __init__(self, max_distance: int, colour_match: ColourMatch) -> None:
        self.index = HammingIndex(max_distance)
        self.colour_match = colour_match
        self._bits = np.zeros(0, dtype=np.uint64)
        self._colour = np.zeros((0, COLOUR_BYTES), dtype=np.uint8)
        self._order = np.zeros(0, dtype=np.int64)
        self._free: list[int] = []  # slots freed by evictions, reused first: the arrays never outgrow the bound
        self._used = 0  # slots [0, _used) have been handed out
        self._near: dict[PerceptualKey, list[tuple[int, int]]] = {}  # nearest() answers while the keys hold

    def __len__(self) -> int:
        return len(self.index)

    def key(self, slot: int) -> PerceptualKey:
        return PerceptualKey(int(self._bits[slot]), self._colour[slot].tobytes())

    def find(self, key: PerceptualKey) -> int | None:
        """The slot holding exactly this key."""
        for _, slot in self.index.search(key.bits, 0):
            if self._colour[slot].tobytes() == key.colour:
                return slot
        return None

    def nearest(self, key: PerceptualKey) -> list[tuple[int, int]]:
        """(distance, slot) of stored keys within radius whose colour matches, nearest first. Do not modify it.

        Remembered until a key is stored or discarded: the answer is a function of the query and the stored keys
        alone (the index's search and the colour check are pure), and a fixed camera's reused keys ask the same
        question every frame. An all-hit frame then pays a dict look-up a slot instead of an index search and
        its colour checks (docs/benchmarks.md, "Hit path").
        """
        found = self._near.get(key)
        if found is None:
            colour, match = self._colour, self.colour_match
            found = [(d, s) for d, s in self.index.search(key.bits) if match(colour[s].tobytes(), key.colour)]
            if len(self._near) >= NEAR_MEMO:
                self._near.clear()
            self._near[key] = found
        return found

    def reserve(self, count: int) -> None:
        """Room for `count` keys in one allocation (the disk tier knows its size at open: no growth copies)."""
        if count > self._bits.size:
            self._resize(count)

    def _resize(self, cap: int) -> None:
        old = self._bits.size
        self._bits = np.resize(self._bits, cap)
        self._colour = np.resize(self._colour, (cap, COLOUR_BYTES))
        self._order = np.resize(self._order, cap)
        self._order[old:] = _FREE

    def _slots(self, count: int) -> np.ndarray:
        reused = [self._free.pop() for _ in range(min(count, len(self._free)))]
        fresh = np.arange(self._used, self._used + count - len(reused), dtype=np.int64)
        self._used += fresh.size
        if self._used > self._bits.size:  # grow by an eighth: little slack at a million keys
            self._resize(max(self._used, self._bits.size + self._bits.size // 8, 1024))
        return np.concatenate([np.array(reused, dtype=np.int64), fresh])

    def add(self, key: PerceptualKey, order: int = 0) -> int:
        """The slot of `key`, stored now if absent."""
        slot = self.find(key)
        if slot is None:
            if len(key.colour) != COLOUR_BYTES:
                raise ValueError(f"colour signature of {len(key.colour)} bytes, expected {COLOUR_BYTES}")
            slot = int(self._slots(1)[0])
            self._bits[slot], self._order[slot] = key.bits, order
            self._colour[slot] = np.frombuffer(key.colour, dtype=np.uint8)
            # add_many: find() just showed the key absent, so skip add()'s own look-up (a scan below 30k keys).
            self.index.add_many(np.array([key.bits], dtype=np.uint64), np.array([slot], dtype=np.int64))
            self._near.clear()
        return slot

    def add_many(self, bits: np.ndarray, colours: np.ndarray, order: np.ndarray) -> None:
        """Keys known to be absent (the caller checks), with their store order."""
        slots = self._slots(bits.size)
        self._bits[slots], self._colour[slots], self._order[slots] = bits, colours, order
        self.index.add_many(bits, slots)
        self._near.clear()

    def touch(self, slot: int, order: int) -> None:
        self._order[slot] = order

    def discard(self, slot: int) -> None:
        if self._order[slot] != _FREE:
            self.index.remove(int(self._bits[slot]), slot)
            self._order[slot] = _FREE
            self._free.append(slot)
            self._near.clear()

    def oldest(self, count: int) -> np.ndarray:
        """The `count` least recently stored slots (diskcache's own eviction order)."""
        count = min(count, len(self))
        if count <= 0:
            return np.zeros(0, dtype=np.int64)
        return np.argpartition(self._order[: self._used], count - 1)[:count]
