"""Statistics of served frames: cumulative counters plus percentiles and rates over a sliding window.

A frame is on the *hit* path when every slot was served from a cache tier (memory or disk) and on the *miss*
path when at least one slot waited on an inference (its own or a coalesced one). Percentiles are computed when
asked, over the frames of the last `window_s` seconds; the window holds at most `max_samples` frames so a burst
cannot grow memory without bound.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass

from shelfsense.recognition.recognizer import FrameResult
from shelfsense.types import Tier, percentiles


@dataclass(slots=True)
class _Sample:
    t: float
    camera: str
    latency_ms: float
    hit_path: bool
    slot_hits: int
    slots: int
    inference_ms: tuple[float, ...]


class Stats:
    def __init__(self, window_s: float = 60.0, max_samples: int = 200_000, clock=time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self.started = clock()
        self.tiers: Counter[str] = Counter(dict.fromkeys(Tier, 0))
        self.errors: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        self._window: deque[_Sample] = deque(maxlen=max_samples)

    def record(self, result: FrameResult) -> None:
        for s in result.slots:
            self.tiers[s.cache] += 1
        self.frames[result.camera] += 1
        self._window.append(
            _Sample(
                t=self._clock(),
                camera=result.camera,
                latency_ms=result.latency_ms,
                hit_path=result.all_hits,
                slot_hits=sum(s.cache.is_hit for s in result.slots),
                slots=len(result.slots),
                inference_ms=tuple(s.inference_ms for s in result.slots if s.cache is Tier.MISS),
            )
        )

    def record_error(self, code: str) -> None:
        self.errors[code] += 1

    def _recent(self) -> list[_Sample]:
        horizon = self._clock() - self.window_s
        while self._window and self._window[0].t < horizon:
            self._window.popleft()
        return list(self._window)

    def snapshot(self) -> dict:
        """Counters and window figures for GET /v1/stats (the app adds cache entries, device and model)."""
        now = self._clock()
        recent = self._recent()
        # Rates over the window, or over the uptime while it is shorter (at least 1 s, so a first burst is no spike).
        span = min(self.window_s, max(now - self.started, 1.0))
        slots = sum(self.tiers.values())
        hits = self.tiers[Tier.MEMORY] + self.tiers[Tier.DISK]
        w_slots = sum(s.slots for s in recent)
        cameras = {}
        for cam, frames in sorted(self.frames.items()):
            mine = [s for s in recent if s.camera == cam]
            cam_slots = sum(s.slots for s in mine)
            cameras[cam] = {
                "frames": frames,
                "fps": round(len(mine) / span, 3),
                "hit_rate": round(sum(s.slot_hits for s in mine) / cam_slots, 4) if cam_slots else None,
            }
        return {
            "uptime_s": round(now - self.started, 3),
            "window_s": self.window_s,
            "cache": {
                "hit_rate": round(hits / slots, 4) if slots else None,
                "hit_rate_window": round(sum(s.slot_hits for s in recent) / w_slots, 4) if w_slots else None,
                "memory_hits": self.tiers[Tier.MEMORY],
                "disk_hits": self.tiers[Tier.DISK],
                "misses": self.tiers[Tier.MISS],
                "coalesced": self.tiers[Tier.COALESCED],
                "slot_results": slots,
            },
            "latency_ms": {
                "hit": {
                    **percentiles(s.latency_ms for s in recent if s.hit_path),
                    "count": sum(s.hit_path for s in recent),
                },
                "miss": {
                    **percentiles(s.latency_ms for s in recent if not s.hit_path),
                    "count": sum(not s.hit_path for s in recent),
                },
                "frame": {**percentiles(s.latency_ms for s in recent), "count": len(recent)},
            },
            "inference_ms": percentiles((ms for s in recent for ms in s.inference_ms), (50, 99)),
            "throughput_fps": round(len(recent) / span, 3),
            "frames": sum(self.frames.values()),
            "cameras": cameras,
            "errors": dict(self.errors),
        }
