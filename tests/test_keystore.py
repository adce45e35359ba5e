"""KeyStore.nearest remembers its answers per key: they must always be what a search of the current keys gives."""

from __future__ import annotations

import random

from shelfsense.recognition.answer import Answer
from shelfsense.recognition.cache import MemoryTier
from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.keystore import COLOUR_BYTES, KeyStore

RADIUS = 8


def same_colour(a: bytes, b: bytes) -> bool:
    return a == b


def near(key: PerceptualKey, flips: int, rng: random.Random) -> PerceptualKey:
    bits = key.bits
    for bit in rng.sample(range(64), flips):
        bits ^= 1 << bit
    return PerceptualKey(bits, key.colour)


def brute_force(stored: dict[int, PerceptualKey], query: PerceptualKey) -> list[tuple[int, int]]:
    found = [((k.bits ^ query.bits).bit_count(), slot) for slot, k in stored.items() if k.colour == query.colour]
    return sorted((d, s) for d, s in found if d <= RADIUS)


def test_nearest_follows_every_add_and_discard() -> None:
    rng = random.Random(7)
    colours = [rng.randbytes(COLOUR_BYTES) for _ in range(2)]
    bases = [PerceptualKey(rng.getrandbits(64), rng.choice(colours)) for _ in range(6)]
    store = KeyStore(RADIUS, same_colour)
    stored: dict[int, PerceptualKey] = {}
    queries = [near(b, rng.randint(0, 6), rng) for b in bases for _ in range(3)]
    for step in range(600):
        action = rng.random()
        if action < 0.25:
            key = near(rng.choice(bases), rng.randint(0, 8), rng)
            stored[store.add(key)] = key
        elif action < 0.35 and stored:
            slot = rng.choice(sorted(stored))
            store.discard(slot)
            del stored[slot]
        else:
            query = rng.choice(queries)  # the same few questions again and again, as a fixed camera asks them
            assert store.nearest(query) == brute_force(stored, query), step


def test_memory_tier_finds_a_nearer_key_stored_after_a_lookup() -> None:
    rng = random.Random(3)
    colour = rng.randbytes(COLOUR_BYTES)
    query = PerceptualKey(rng.getrandbits(64), colour)
    far, nearer = near(query, 6, rng), near(query, 1, rng)
    tier = MemoryTier(2, RADIUS, same_colour)
    tier.put(far, Answer([("far", 0.9)]))
    assert tier.lookup(query).distance == 6
    tier.put(nearer, Answer([("nearer", 0.9)]))
    hit = tier.lookup(query)
    assert (hit.prediction[0][0], hit.distance, hit.key) == ("nearer", 1, nearer)
    # The LRU drops the least recently used entry (far) when a third arrives: lookups stop finding it.
    tier.put(PerceptualKey(rng.getrandbits(64), colour), Answer([("other", 0.9)]))
    tier.put(PerceptualKey(rng.getrandbits(64), colour), Answer([("other", 0.9)]))
    assert tier.lookup(query) is None
