"""The service's state: one `Service` per app, stored under a typed AppKey that handlers and the app share."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from shelfsense.config import Config
from shelfsense.footage.writer import RecordingWriter
from shelfsense.recognition.recognizer import Recognizer
from shelfsense.recognition.result import FrameResult
from shelfsense.service.admission import Admission
from shelfsense.service.device import DeviceMonitor, DeviceReading
from shelfsense.service.history import History
from shelfsense.service.metrics import Metrics
from shelfsense.service.stats import Stats
from shelfsense.service.thermal import ThermalController
from shelfsense.shelf.hub import ShelfHub


@dataclass
class Service:
    config: Config
    stats: Stats
    metrics: Metrics
    monitor: DeviceMonitor
    admission: Admission
    thermal: ThermalController  # the step of thermal-aware operation, fed by the telemetry reader
    recognizer: Recognizer | None = None
    model_error: str | None = "model not loaded yet"
    device: DeviceReading | None = None
    recorder: RecordingWriter | None = None
    record_thread: ThreadPoolExecutor | None = None  # one thread keeps the recording in arrival order
    frame_numbers: dict[str, int] = field(default_factory=dict)
    unknown_cameras: dict[str, None] = field(default_factory=dict)  # least recently seen first
    # Shelf state and events (issue 12; service/shelves.py fills these)
    shelves: ShelfHub | None = None
    history: History | None = None
    snapshots: dict[str, tuple[bytes, int, tuple[int, int]]] = field(default_factory=dict)  # JPEG, frame, size
    snapshot_at: dict[str, float] = field(default_factory=dict)  # monotonic time of the last snapshot

    def record(self, result: FrameResult) -> None:
        """One observer of answered frames: the JSON stats and the Prometheus metrics never drift apart."""
        self._track(result.camera)
        self.stats.record(result)
        self.metrics.record(result)

    def _track(self, camera: str) -> None:
        """Unconfigured cameras (allow_unknown_cameras) are remembered up to server.max_cameras, least recent
        forgotten first: any client can invent ids, and each would grow the stats and the Prometheus series."""
        if camera in self.config.cameras:
            return
        self.unknown_cameras.pop(camera, None)
        self.unknown_cameras[camera] = None
        while len(self.unknown_cameras) > self.config.server.max_cameras:
            gone = next(iter(self.unknown_cameras))
            del self.unknown_cameras[gone]
            self.stats.forget(gone)
            self.metrics.forget(gone)
            self.frame_numbers.pop(gone, None)

    def record_error(self, code: str) -> None:
        self.stats.record_error(code)
        self.metrics.record_error(code)

    def next_frame_number(self, camera: str) -> int:
        self.frame_numbers[camera] = self.frame_numbers.get(camera, 0) + 1
        return self.frame_numbers[camera]


SERVICE = web.AppKey("service", Service)
