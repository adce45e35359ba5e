"""Single flight: concurrent misses for the same product run one resolution and share its result.

"The same product" is the cache's own notion of sameness (Hamming radius plus colour match), because one
product seen in several slots or cameras at once never hashes to exactly the same bits. The flight set is
small (bounded by the inference queue), so a linear scan is cheaper than an index here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.keystore import ColourMatch

T = TypeVar("T")


class Coalescer:
    def __init__(self, max_distance: int, colour_match: ColourMatch) -> None:
        self.max_distance = max_distance
        self.colour_match = colour_match
        self._flights: dict[PerceptualKey, asyncio.Future] = {}

    def _find(self, key: PerceptualKey) -> asyncio.Future | None:
        for other, future in self._flights.items():
            if (other.bits ^ key.bits).bit_count() <= self.max_distance and self.colour_match(other.colour, key.colour):
                return future
        return None

    async def run(self, key: PerceptualKey, work: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """`work()`'s result, and whether it was shared from a flight already running for a near-equal key.

        A failing flight fails every waiter with its exception.
        """
        running = self._find(key)
        if running is not None:
            return await asyncio.shield(running), True
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            result = await work()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so a flight nobody joined does not log "never retrieved"
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)
