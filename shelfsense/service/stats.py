"""Statistics of served frames: cumulative counters plus percentiles and rates over a sliding window.

A frame is on the *hit* path when every slot was served from a cache tier (memory or disk) and on the *miss*
path when at least one slot waited on an inference (its own or a coalesced one).

The window is a ring of one-second buckets. Each bucket holds latency histograms (log-spaced bins 2 % wide) and
per-camera counts, so memory is fixed whatever the frame rate, and a snapshot costs O(cameras x buckets + bins),
never O(frames): /v1/stats stays a few milliseconds on the event loop at any load. Percentiles are computed like
numpy's linear method with each sample standing at its bin's geometric centre, so they are within about 1 % of
the exact figure.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from shelfsense.recognition.result import FrameResult
from shelfsense.types import Tier

__all__ = ["Stats"]

_BIN_RATIO = 1.02
_MIN_MS = 0.001
_BINS = int(math.log(1e7 / _MIN_MS) / math.log(_BIN_RATIO)) + 2  # 1 us .. ~3 h
_CENTRES = _MIN_MS * _BIN_RATIO ** (np.arange(_BINS) + 0.5)
_PATHS = ("hit", "miss", "inference")
_CAMERA_COUNTS = 3  # frames, slots served from a cache tier, slots


def _bin(ms: float) -> int:
    if ms <= _MIN_MS:
        return 0
    return min(_BINS - 1, int(math.log(ms / _MIN_MS) / math.log(_BIN_RATIO)))


def _percentiles(hist: np.ndarray, qs: tuple[int, ...]) -> dict[str, float | None]:
    n = int(hist.sum())
    if n == 0:
        return {f"p{q}": None for q in qs}
    cum = np.cumsum(hist)
    out: dict[str, float | None] = {}
    for q in qs:
        rank = q / 100 * (n - 1)  # numpy's "linear" method over the sorted samples
        lo, frac = int(rank), rank - int(rank)
        below, above = np.searchsorted(cum, [lo + 1, min(lo + 2, n)])
        value = _CENTRES[below] + frac * (_CENTRES[above] - _CENTRES[below])
        out[f"p{q}"] = round(float(value), 3)
    return out


class Stats:
    def __init__(
        self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic, resolution_s: float = 1.0
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._resolution = resolution_s
        self._n = max(1, math.ceil(window_s / resolution_s))
        self.started = clock()
        self.tiers: Counter[str] = Counter(dict.fromkeys(Tier, 0))
        self.errors: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        self._epochs = np.full(self._n, -1, dtype=np.int64)  # which second each bucket holds now
        self._hist = np.zeros((len(_PATHS), self._n, _BINS), dtype=np.int32)
        self._cameras: dict[str, np.ndarray] = {}  # camera -> (buckets, _CAMERA_COUNTS)

    def _bucket(self) -> int:
        epoch = int(self._clock() // self._resolution)
        b = epoch % self._n
        if self._epochs[b] != epoch:  # a second that left the window: clear its bucket before reuse
            self._epochs[b] = epoch
            self._hist[:, b, :] = 0
            for counts in self._cameras.values():
                counts[b] = 0
        return b

    def record(self, result: FrameResult) -> None:
        for s in result.slots:
            self.tiers[s.cache] += 1
        self.frames[result.camera] += 1
        b = self._bucket()
        self._hist[0 if result.all_hits else 1, b, _bin(result.latency_ms)] += 1
        for s in result.slots:
            if s.cache is Tier.MISS:
                self._hist[2, b, _bin(s.inference_ms)] += 1
        counts = self._cameras.get(result.camera)
        if counts is None:
            counts = self._cameras[result.camera] = np.zeros((self._n, _CAMERA_COUNTS), dtype=np.int64)
        counts[b] += (1, sum(s.cache.is_hit for s in result.slots), len(result.slots))

    def record_error(self, code: str) -> None:
        self.errors[code] += 1

    def forget(self, camera: str) -> None:
        """Drop a camera's figures (an unknown camera evicted to keep state bounded)."""
        self.frames.pop(camera, None)
        self._cameras.pop(camera, None)

    def _live(self) -> np.ndarray:
        """Mask of the buckets inside the window now."""
        epoch = int(self._clock() // self._resolution)
        return self._epochs >= epoch - self._n

    def snapshot(self) -> dict:
        """Counters and window figures for GET /v1/stats (the app adds cache entries, device and model)."""
        now = self._clock()
        live = self._live()
        # Rates over the window, or over the uptime while it is shorter (at least 1 s, so a first burst is no spike).
        span = min(self.window_s, max(now - self.started, 1.0))
        hist = self._hist[:, live, :].sum(axis=1)
        frames_hist = hist[0] + hist[1]
        totals = np.zeros(_CAMERA_COUNTS, dtype=np.int64)
        cameras = {}
        for cam, frames in sorted(self.frames.items()):
            mine = self._cameras[cam][live].sum(axis=0)
            totals += mine
            cameras[cam] = {
                "frames": frames,
                "fps": round(int(mine[0]) / span, 3),
                "hit_rate": round(int(mine[1]) / int(mine[2]), 4) if mine[2] else None,
            }
        slots = sum(self.tiers.values())
        hits = self.tiers[Tier.MEMORY] + self.tiers[Tier.DISK]
        qs = (50, 90, 99)
        return {
            "uptime_s": round(now - self.started, 3),
            "window_s": self.window_s,
            "cache": {
                "hit_rate": round(hits / slots, 4) if slots else None,
                "hit_rate_window": round(int(totals[1]) / int(totals[2]), 4) if totals[2] else None,
                "memory_hits": self.tiers[Tier.MEMORY],
                "disk_hits": self.tiers[Tier.DISK],
                "misses": self.tiers[Tier.MISS],
                "coalesced": self.tiers[Tier.COALESCED],
                "slot_results": slots,
            },
            "latency_ms": {
                "hit": {**_percentiles(hist[0], qs), "count": int(hist[0].sum())},
                "miss": {**_percentiles(hist[1], qs), "count": int(hist[1].sum())},
                "frame": {**_percentiles(frames_hist, qs), "count": int(frames_hist.sum())},
            },
            "inference_ms": _percentiles(hist[2], (50, 99)),
            "throughput_fps": round(int(frames_hist.sum()) / span, 3),
            "frames": sum(self.frames.values()),
            "cameras": cameras,
            "errors": dict(self.errors),
        }

    @property
    def nbytes(self) -> int:
        """Memory held by the window (fixed: it does not grow with the frame rate)."""
        return self._hist.nbytes + self._epochs.nbytes + sum(c.nbytes for c in self._cameras.values())
