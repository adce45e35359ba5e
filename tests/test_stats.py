"""Sliding-window statistics: percentiles, hit rates and rates for known latencies, with a controlled clock."""

from __future__ import annotations

import numpy as np
import pytest

from shelfsense.recognition.result import FrameResult, SlotResult
from shelfsense.service.stats import Stats
from shelfsense.types import Tier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def frame(camera: str, latency_ms: float, tiers: list[str], inference_ms: float = 7.0) -> FrameResult:
    slots = [
        SlotResult(i, (0, 0, 1, 1), "x", 0.9, Tier(t), None, [], 0.0, inference_ms if t == "miss" else 0.0)
        for i, t in enumerate(tiers)
    ]
    return FrameResult(camera, 1, 1, slots, 0.0, 0.0, 0.0, 0.0, latency_ms)


def test_percentiles_by_path_for_known_latencies() -> None:
    clock = Clock()
    stats = Stats(window_s=60, clock=clock)
    hits = [float(v) for v in range(1, 101)]  # 1..100 ms
    misses = [100.0 + 10 * v for v in range(1, 21)]  # 110..300 ms
    for ms in hits:
        stats.record(frame("a", ms, ["memory", "disk"]))
    for ms in misses:
        stats.record(frame("b", ms, ["memory", "miss"], inference_ms=ms / 2))
    clock.now += 60  # a minute of service: rates are over the whole window
    snap = stats.snapshot()
    lat = snap["latency_ms"]
    # histogram bins are 2 % wide: every percentile within 1 % of numpy's exact figure
    assert lat["hit"]["count"] == 100
    for q in (50, 90, 99):
        assert lat["hit"][f"p{q}"] == pytest.approx(np.percentile(hits, q), rel=0.01)
    assert lat["miss"]["p50"] == pytest.approx(np.percentile(misses, 50), rel=0.01)
    assert lat["miss"]["p99"] == pytest.approx(np.percentile(misses, 99), rel=0.01)
    assert lat["frame"]["p90"] == pytest.approx(np.percentile(hits + misses, 90), rel=0.01)
    assert snap["inference_ms"]["p50"] == pytest.approx(np.percentile([m / 2 for m in misses], 50), rel=0.01)
    c = snap["cache"]
    assert (c["memory_hits"], c["disk_hits"], c["misses"], c["coalesced"]) == (120, 100, 20, 0)
    assert c["hit_rate"] == pytest.approx(220 / 240, abs=1e-4) and c["hit_rate_window"] == c["hit_rate"]
    assert snap["cameras"]["a"] == {"frames": 100, "fps": pytest.approx(100 / 60, abs=1e-3), "hit_rate": 1.0}
    assert snap["cameras"]["b"]["hit_rate"] == 0.5


def test_window_forgets_old_frames_but_counters_do_not() -> None:
    clock = Clock()
    stats = Stats(window_s=10, clock=clock)
    for _ in range(5):
        stats.record(frame("a", 500.0, ["miss"]))
    clock.now += 30  # those five are out of the window now
    for ms in (1.0, 2.0, 3.0):
        stats.record(frame("a", ms, ["memory"]))
    snap = stats.snapshot()
    lat = snap["latency_ms"]["frame"]
    assert lat["count"] == 3
    assert (lat["p50"], lat["p90"], lat["p99"]) == pytest.approx((2.0, 2.8, 2.98), rel=0.01)
    assert snap["latency_ms"]["miss"] == {"p50": None, "p90": None, "p99": None, "count": 0}
    assert snap["cache"]["hit_rate_window"] == 1.0 and snap["cache"]["hit_rate"] == 3 / 8
    assert snap["throughput_fps"] == pytest.approx(0.3) and snap["frames"] == 8
    assert snap["window_s"] == 10


def test_empty_stats_are_null_not_zero() -> None:
    snap = Stats().snapshot()
    assert snap["cache"]["hit_rate"] is None and snap["latency_ms"]["hit"]["p50"] is None
    assert snap["inference_ms"] == {"p50": None, "p99": None}


def test_window_is_bounded_in_memory() -> None:
    """Memory is fixed by the window, not by the frame rate: a thousand frames hold what ten did."""
    clock = Clock()
    stats = Stats(window_s=60, clock=clock)
    for i in range(10):
        stats.record(frame("a", float(i), ["memory"]))
    held = stats.nbytes
    for i in range(1000):
        stats.record(frame("a", float(i), ["memory"]))
    assert stats.snapshot()["latency_ms"]["frame"]["count"] == 1010
    assert stats.nbytes == held


def test_forgotten_camera_leaves_the_snapshot() -> None:
    stats = Stats(window_s=60, clock=Clock())
    for cam in ("a", "b"):
        stats.record(frame(cam, 1.0, ["memory"]))
    stats.forget("a")
    assert list(stats.snapshot()["cameras"]) == ["b"]
