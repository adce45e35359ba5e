"""When a fully confirmed cached answer is due for re-verification (issue 12: no answer lives forever).

Even an averaged answer can go stale: another flavour of the same brand swapped into a facing may fall within the
hit radius of the old product's key and be served the old label for as long as it stays. NVRs re-check stationary
objects at an interval for the same reason. So a confirmed answer is re-inferred after `cache.reverify_hits` hits or
`cache.reverify_s` seconds since its last inference; the recognizer runs it on an idle worker, like a confirmation.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from shelfsense.config import CacheConfig
from shelfsense.recognition.cache import Hit
from shelfsense.recognition.hashing import PerceptualKey

__all__ = ["ReverifySchedule"]


class ReverifySchedule:
    def __init__(self, cache: CacheConfig) -> None:
        self.cache = cache
        self.runs = 0  # re-inferences of confirmed answers
        self.changed = 0  # ... whose fresh top label disagreed, so the crop got its own answer
        self._verified_at: OrderedDict[PerceptualKey, float] = OrderedDict()  # monotonic time of the last inference

    def due(self, hit: Hit) -> bool:
        c = self.cache
        if c.reverify_hits and hit.hits >= c.reverify_hits:
            return True
        if not c.reverify_s:
            return False
        seen = self._verified_at.get(hit.key)
        if seen is None:  # first hit since start-up (or since it was forgotten): its age counts from now
            self.verified(hit.key)
            return False
        return time.monotonic() - seen >= c.reverify_s

    def verified(self, key: PerceptualKey) -> None:
        """`key`'s answer was just inferred (a miss, a confirmation or a re-verification)."""
        self._verified_at[key] = time.monotonic()
        self._verified_at.move_to_end(key)
        while len(self._verified_at) > self.cache.memory_entries:  # no more keys than the memory tier holds
            self._verified_at.popitem(last=False)
