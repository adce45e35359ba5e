"""The project's shared vocabulary, one definition each: every layer says the same word for the same thing."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import numpy as np

__all__ = ["Box", "Prediction", "Tier", "percentiles"]

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of a frame
Prediction = list[tuple[str, float]]  # top-k (label, score), best first


class Tier(StrEnum):
    """Where a slot's answer came from. A StrEnum, so JSON, Prometheus labels and footage records carry the word."""

    MEMORY = "memory"  # the in-memory LRU tier
    DISK = "disk"  # the diskcache tier
    MISS = "miss"  # this slot's own inference
    COALESCED = "coalesced"  # waited on another slot's identical inference already running

    @property
    def is_hit(self) -> bool:
        """Served from the cache without this frame waiting on any inference."""
        return self in (Tier.MEMORY, Tier.DISK)


def percentiles(
    values: Iterable[float], qs: Iterable[int] = (50, 90, 99), *, extremes: bool = False
) -> dict[str, float | None]:
    """{"p50": ..., "p90": ..., "p99": ...} rounded to 3 decimals (None for no values); `extremes` adds mean and max."""
    qs = tuple(qs)
    data = np.fromiter(values, dtype=np.float64)
    keys = [f"p{q}" for q in qs] + (["mean", "max"] if extremes else [])
    if data.size == 0:
        return dict.fromkeys(keys)
    out: dict[str, float | None] = {f"p{q}": round(float(np.percentile(data, q)), 3) for q in qs}
    if extremes:
        out["mean"] = round(float(data.mean()), 3)
        out["max"] = round(float(data.max()), 3)
    return out
