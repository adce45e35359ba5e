"""Prometheus exposition of the service (GET /metrics), in a registry of the app's own, not the global one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from shelfsense.recognition.result import FrameResult
from shelfsense.service.thermal import REASONS, ThermalStatus
from shelfsense.types import Tier

# Seconds. A Pi answers a fully cached frame in a few ms and a frame of misses in tens to hundreds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames = Counter("shelfsense_frames", "Frames recognised", ["camera"], registry=r)
        self.slots = Counter("shelfsense_slot_results", "Slot results by cache tier", ["cache"], registry=r)
        self.errors = Counter("shelfsense_errors", "Rejected requests by error kind", ["kind"], registry=r)
        self.frame_latency = Histogram(
            "shelfsense_frame_latency_seconds",
            "Server-side frame latency by path (hit: every slot from cache; miss: at least one inference)",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "shelfsense_inference_seconds", "One slot inference", buckets=INFERENCE_BUCKETS, registry=r
        )
        self.temperature = Gauge("shelfsense_temperature_celsius", "Device (SoC) temperature", registry=r)
        self.throttled = Gauge("shelfsense_throttled", "1 while the device is throttled or capped now", registry=r)
        self.queue_depth = Gauge("shelfsense_queue_depth", "Slot inferences waiting or running", registry=r)
        self.cache_entries = Gauge("shelfsense_cache_entries", "Entries in each cache tier", ["tier"], registry=r)

    def record(self, result: FrameResult) -> None:
        self.frames.labels(result.camera).inc()
        for s in result.slots:
            self.slots.labels(s.cache).inc()
            if s.cache is Tier.MISS:
                self.inference.observe(s.inference_ms / 1000.0)
        self.frame_latency.labels("hit" if result.all_hits else "miss").observe(result.latency_ms / 1000.0)

    def forget(self, camera: str) -> None:
        """Remove a camera's series (an unknown camera evicted to keep the label set bounded)."""
        with contextlib.suppress(KeyError):
            self.frames.remove(camera)

    def record_error(self, kind: str) -> None:
        self.errors.labels(kind).inc()

    def bind_gauges(
        self,
        queue_depth: Callable[[], float],
        entries_memory: Callable[[], float],
        entries_disk: Callable[[], float],
    ) -> None:
        """Gauges read live at scrape time rather than pushed on every frame."""
        self.queue_depth.set_function(queue_depth)
        self.cache_entries.labels(Tier.MEMORY).set_function(entries_memory)
        self.cache_entries.labels(Tier.DISK).set_function(entries_disk)

    # ---- shelf state and events (issue 12) -----------------------------------------------------------------

    def bind_shelf(self, read: Callable[[], dict]) -> None:
        """Shelf series read live at scrape time from `read()` (service/shelves.py supplies it)."""
        self.registry.register(_ShelfCollector(read))

    def set_device(self, temperature_c: float | None, throttled_now: bool | None) -> None:
        self.temperature.set(float("nan") if temperature_c is None else temperature_c)
        self.throttled.set(float("nan") if throttled_now is None else float(throttled_now))

    def bind_thermal(self, status: Callable[[], ThermalStatus]) -> None:
        """The thermal step, its reasons and the time in each step, read from the controller at scrape time."""
        self.registry.register(_ThermalCollector(status))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ThermalCollector(Collector):
    def __init__(self, status: Callable[[], ThermalStatus]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        s = self._status()
        yield GaugeMetricFamily(
            "shelfsense_thermal_step",
            "Thermal step: 0 normal, 1 pause_background, 2 fewer_threads, 3 slow_cameras",
            value=s.step,
        )
        reasons = GaugeMetricFamily(
            "shelfsense_thermal_reason", "1 while this reason holds the step up", labels=["reason"]
        )
        for code in REASONS:
            reasons.add_metric([code], float(code in s.reasons))
        yield reasons
        seconds = CounterMetricFamily(
            "shelfsense_thermal_step_seconds", "Time spent in each thermal step", labels=["step"]
        )
        for name, spent in s.seconds_in_step.items():
            seconds.add_metric([name], spent)
        yield seconds
        yield GaugeMetricFamily(
            "shelfsense_under_voltage",
            "1 while the Pi reports under-voltage now (NaN: no vcgencmd reading)",
            value=float("nan") if s.under_voltage is None else float(s.under_voltage),
        )
        yield GaugeMetricFamily(
            "shelfsense_next_frame_after_seconds",
            "What frame answers ask cameras to wait (0: no slowing down)",
            value=s.next_frame_after_ms / 1000.0,
        )


class _ShelfCollector:
    """shelfsense_shelf_slots{camera,state}, shelfsense_shelf_events_total{type}, shelfsense_out_of_stock_seconds,
    shelfsense_reverify_total{outcome}: read from the shelf hub and the recognizer when scraped."""

    def __init__(self, read: Callable[[], dict]) -> None:
        self.read = read

    def describe(self) -> list:
        return []  # nothing to check at registration (the figures exist only once the service runs)

    def collect(self):  # noqa: ANN201 - prometheus_client's collector protocol
        f = self.read()
        slots = GaugeMetricFamily(
            "shelfsense_shelf_slots", "Slots by debounced shelf state", labels=["camera", "state"]
        )
        for (camera, state), n in sorted(f["slots"].items()):
            slots.add_metric([camera, state], n)
        yield slots
        events = CounterMetricFamily("shelfsense_shelf_events", "Shelf events by type", labels=["type"])
        for kind, n in sorted(f["events"].items()):
            events.add_metric([kind], n)
        yield events
        yield GaugeMetricFamily(
            "shelfsense_out_of_stock_seconds",
            "Sum over the slots empty now of how long each has been empty",
            value=f["out_of_stock_seconds"],
        )
        reverify = CounterMetricFamily(
            "shelfsense_reverify", "Background re-verifications of confirmed cached answers", labels=["outcome"]
        )
        reverify.add_metric(["same"], f["reverifications"] - f["reverify_changed"])
        reverify.add_metric(["changed"], f["reverify_changed"])
        yield reverify
