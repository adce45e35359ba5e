"""Configuration: parsed once from TOML into frozen dataclasses, then passed down.

A user's file states only what it changes; everything else takes the defaults below, which `config.toml` at the
top of the repository documents one for one (a test keeps the two equal). Unknown keys and bad values raise
`ConfigError` naming the key. Relative paths are resolved against the directory of the file that states them,
except in the bundled file of an installed wheel, whose writable paths (the disk cache, recordings) go to the state
directory instead of into site-packages.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from shelfsense import shelfconfig  # [shelf], [mqtt] and the planogram (issue 12)
from shelfsense.errors import ConfigError
from shelfsense.locations import BUNDLED_CONFIG, BUNDLED_MODEL, IN_CHECKOUT, STATE_FIELD, state_dir
from shelfsense.thermalconfig import ThermalConfig, validate_thermal
from shelfsense.tomlvalues import coerce
from shelfsense.types import Box

# One rule for camera ids, shared by the config, HTTP, recordings and replay: ids become directory names inside
# a recording, so they must not be able to escape it.
CAMERA_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def check_camera_id(camera: str) -> str:
    if not CAMERA_ID.fullmatch(camera):  # fullmatch: '$' would let a trailing newline through
        raise ValueError(
            f"camera id {camera[:80]!r} is not usable: use 1-64 characters from A-Z a-z 0-9 . _ - "
            "(not starting with '.' or '-')"
        )
    return camera


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 8 * 1024 * 1024  # 8 MiB: a 4K JPEG is ~2 MiB
    read_token: str = ""  # when set, /v1/stats, /metrics and the dashboard need it
    allow_unknown_cameras: bool = False  # unknown ids get one whole-frame slot instead of 404
    stats_window_s: float = 60.0
    max_pending_frames: int = 32  # frames admitted and being recognised at once; more answer 503
    # Admission and slow clients (docs/reliability.md): every limit answers fast with JSON, never by stalling.
    max_frame_pixels: int = 3840 * 2160  # 4K; larger frames are refused from their header, before decoding
    max_body_buffer_bytes: int = 64 * 1024 * 1024  # 64 MiB of bodies being received, all clients; over it 503
    body_timeout_s: float = 10.0  # a frame body must arrive within this; slower answers 408
    # A connection waiting for its next request's headers (new, idle, or sending them slowly) is closed after this.
    keepalive_timeout_s: float = 15.0
    max_connections: int = 256  # open connections; more are refused at once (capped below the descriptor limit)
    max_cameras: int = 64  # cameras tracked with allow_unknown_cameras (stats, metrics); least recent forgotten


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    path: Path = BUNDLED_MODEL
    labels: Path | None = None  # default: <model stem>_labels.txt / labels.txt beside the model
    runtime: str = "auto"  # auto | litert | tflite-runtime
    threads: int = 2  # inference worker threads, one interpreter each
    interpreter_threads: int = 1  # threads inside each interpreter
    top_k: int = 3
    queue_size: int = 64  # slot inferences waiting for a worker; more answer 503


@dataclass(frozen=True, kw_only=True)
class CacheConfig:
    enabled: bool = True
    hash: str = "phash"
    max_distance: int = 8
    colour_tolerance: int = 10
    key_reuse_threshold: float = 3.0  # grey levels; a slot whose picture moved less keeps its key (0: off)
    confirm_inferences: int = 5  # an answer averages this many inferences of the product (1: first only)
    undecided_margin: float = 0.05  # top-two score gap x sqrt(inferences) under which an answer is re-inferred (0: off)
    memory_entries: int = 20_000
    # None (or "") keeps the cache in memory only
    disk_path: Path | None = field(default_factory=lambda: state_dir() / "cache", metadata=STATE_FIELD)
    disk_bytes: int = 256 * 1024 * 1024  # 256 MiB on disk, SQLite's write-ahead log included
    disk_entries: int = 600_000  # at most this many disk entries (and keys in its in-memory index); see config.toml
    disk_retry_s: float = 5.0  # a failed disk tier is reopened after this, doubling up to 5 minutes
    reverify_s: float = 300.0  # a confirmed answer is re-inferred after this long (0: never) ...
    reverify_hits: int = 1024  # ... or this many hits (0: never); issue 12, docs/shelf.md


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig:
    sysfs_root: Path = Path("/sys")
    vcgencmd: str = "vcgencmd"
    interval_s: float = 2.0


@dataclass(frozen=True, kw_only=True)
class RecordConfig:
    enabled: bool = False
    folder: Path = field(default_factory=lambda: state_dir() / "recordings", metadata=STATE_FIELD)
    cameras: tuple[str, ...] = ()  # empty: every camera
    max_bytes: int = 1024 * 1024 * 1024  # 1 GiB, oldest segments deleted beyond it


@dataclass(frozen=True, kw_only=True)
class GridConfig:
    rows: int
    cols: int
    roi: Box | None = None


@dataclass(frozen=True, kw_only=True)
class CameraConfig:
    id: str
    slots: tuple[Box, ...] = ()
    grid: GridConfig | None = None
    token: str = ""
    width: int | None = None  # expected frame size; boxes are checked against it when given
    height: int | None = None
    planogram: tuple[str, ...] = ()  # expected product per slot ("" = any); shelfconfig.py (issue 12)

    @property
    def slot_count(self) -> int:
        """Slots of every frame of this camera, known before a frame is decoded (admission reserves them)."""
        if self.slots:
            return len(self.slots)
        return self.grid.rows * self.grid.cols if self.grid is not None else 1


@dataclass(frozen=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    thermal: ThermalConfig = field(default_factory=ThermalConfig)  # thermalconfig.py
    shelf: shelfconfig.ShelfConfig = field(default_factory=shelfconfig.ShelfConfig)
    mqtt: shelfconfig.MqttConfig = field(default_factory=shelfconfig.MqttConfig)
    cameras: dict[str, CameraConfig] = field(default_factory=dict)
    source: Path | None = None

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections or section fields replaced: `cfg.replace(cache={"enabled": False})`.

        The copy is checked like a loaded file, so overrides (e.g. `serve --port`) cannot skip the rules.
        """
        changes = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, dict) and dataclasses.is_dataclass(current):
                value = dataclasses.replace(current, **value)
            changes[name] = value
        config = dataclasses.replace(self, **changes)
        _validate(config)
        return config


_SECTIONS = {
    "server": ServerConfig,
    "model": ModelConfig,
    "cache": CacheConfig,
    "telemetry": TelemetryConfig,
    "record": RecordConfig,
    "thermal": ThermalConfig,
    **shelfconfig.SHELF_SECTIONS,  # "shelf", "mqtt"
}
# The perceptual hashes recognition.hashing implements (it checks that it implements exactly these).
HASH_ALGORITHMS = ("phash", "phash_simple", "dhash", "dhash_vertical", "ahash", "whash")
_RUNTIMES = ("auto", "litert", "tflite-runtime")


def load_config(path: str | Path | None = None) -> Config:
    """Read `path` (default: the bundled config.toml) over the built-in defaults."""
    path = Path(path) if path is not None else BUNDLED_CONFIG
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist") from None
    except OSError as exc:  # a folder, no read permission, ...
        raise ConfigError(f"Config file {path} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None
    bundled_in_wheel = not IN_CHECKOUT and path.resolve() == BUNDLED_CONFIG
    return parse_config(
        data, base_dir=path.resolve().parent, source=path, state_base=state_dir() if bundled_in_wheel else None
    )


def parse_config(
    data: dict[str, Any],
    *,
    base_dir: Path | None = None,
    source: Path | None = None,
    state_base: Path | None = None,
) -> Config:
    """`data` over the defaults. Relative paths resolve against `base_dir` (default: the working directory), or
    against `state_base` for writable paths when it is given."""
    base_dir = base_dir or Path.cwd()
    unknown = set(data) - set(_SECTIONS) - {"cameras"}
    if unknown:
        raise ConfigError(f"Unknown config section(s): {', '.join(sorted(unknown))}")
    sections = {name: _section(name, cls, data.get(name, {}), base_dir, state_base) for name, cls in _SECTIONS.items()}
    cameras_raw = data.get("cameras", {})
    if not isinstance(cameras_raw, dict):
        raise ConfigError("Config 'cameras' must be a table of [cameras.<id>] tables")
    cameras = {cid: _camera(cid, raw) for cid, raw in cameras_raw.items()}
    config = Config(**sections, cameras=cameras, source=source)
    _validate(config)
    return config


def _section(name: str, cls: type, raw: Any, base_dir: Path, state_base: Path | None) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"Config '{name}' must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(f"Unknown config key(s) {', '.join(f'{name}.{k}' for k in sorted(unknown))}")
    values = {}
    for key, value in raw.items():
        base = state_base if state_base is not None and fields[key].metadata.get("state") else base_dir
        values[key] = coerce(f"{name}.{key}", hints[key], value, base)
    return cls(**values)


def _box(key: str, value: Any) -> Box:
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(f"Config '{key}' must be [x, y, w, h] in whole pixels, got {value!r}")
    x, y, w, h = value
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        raise ConfigError(f"Config '{key}' = {value!r}: x, y must be >= 0 and w, h > 0")
    return (x, y, w, h)


def _camera(cid: str, raw: Any) -> CameraConfig:
    where = f"cameras.{cid}"
    try:
        check_camera_id(cid)
    except ValueError as exc:
        raise ConfigError(f"Config [cameras.{json.dumps(cid)}]: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Config '{where}' must be a table")
    known = {"slots", "grid", "token", "width", "height", "planogram"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"Unknown config key(s) {', '.join(f'{where}.{k}' for k in sorted(unknown))}")
    if "slots" in raw and "grid" in raw:
        raise ConfigError(f"Config '{where}' sets both 'slots' and 'grid': choose one")
    slots: tuple[Box, ...] = ()
    if "slots" in raw:
        if not isinstance(raw["slots"], list) or not raw["slots"]:
            raise ConfigError(f"Config '{where}.slots' must be a non-empty list of [x, y, w, h] boxes")
        slots = tuple(_box(f"{where}.slots[{i}]", b) for i, b in enumerate(raw["slots"]))
    grid = None
    if "grid" in raw:
        g = raw["grid"]
        if not isinstance(g, dict) or set(g) - {"rows", "cols", "roi"} or not {"rows", "cols"} <= set(g):
            raise ConfigError(f"Config '{where}.grid' must be {{ rows = R, cols = C, roi = [x, y, w, h] }}")
        for k in ("rows", "cols"):
            if not isinstance(g[k], int) or isinstance(g[k], bool) or g[k] < 1:
                raise ConfigError(f"Config '{where}.grid.{k}' must be a positive integer, got {g[k]!r}")
        roi = _box(f"{where}.grid.roi", g["roi"]) if "roi" in g else None
        grid = GridConfig(rows=g["rows"], cols=g["cols"], roi=roi)
    token = raw.get("token", "")
    if not isinstance(token, str):
        raise ConfigError(f"Config '{where}.token' must be a string")
    size = {}
    for k in ("width", "height"):
        if k in raw:
            if not isinstance(raw[k], int) or isinstance(raw[k], bool) or raw[k] < 1:
                raise ConfigError(f"Config '{where}.{k}' must be a positive integer, got {raw[k]!r}")
            size[k] = raw[k]
    planogram = shelfconfig.parse_planogram(where, raw.get("planogram", []))
    camera = CameraConfig(id=cid, slots=slots, grid=grid, token=token, planogram=planogram, **size)
    if camera.width and camera.height:
        shelfconfig.check_planogram(where, planogram, len(slot_boxes(camera, camera.width, camera.height)))
    return camera


def _validate(c: Config) -> None:
    def check(ok: bool, key: str, rule: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"Config '{key}' must be {rule}, got {value!r}")

    check(1 <= c.server.port <= 65535, "server.port", "1..65535", c.server.port)
    check(c.server.max_body_bytes >= 1024, "server.max_body_bytes", ">= 1024", c.server.max_body_bytes)
    check(c.server.stats_window_s > 0, "server.stats_window_s", "> 0", c.server.stats_window_s)
    check(c.server.max_pending_frames >= 1, "server.max_pending_frames", ">= 1", c.server.max_pending_frames)
    check(c.server.max_frame_pixels >= 1, "server.max_frame_pixels", ">= 1", c.server.max_frame_pixels)
    check(
        c.server.max_body_buffer_bytes >= c.server.max_body_bytes,
        "server.max_body_buffer_bytes",
        ">= server.max_body_bytes",
        c.server.max_body_buffer_bytes,
    )
    for key in ("body_timeout_s", "keepalive_timeout_s"):
        check(getattr(c.server, key) > 0, f"server.{key}", "> 0", getattr(c.server, key))
    check(c.server.max_connections >= 2, "server.max_connections", ">= 2", c.server.max_connections)
    check(c.server.max_cameras >= 1, "server.max_cameras", ">= 1", c.server.max_cameras)
    room = c.model.queue_size - c.model.threads
    for camera in c.cameras.values():
        if camera.slot_count > room:
            raise ConfigError(
                f"Camera '{camera.id}' has {camera.slot_count} slots but model.queue_size - model.threads leaves "
                f"room for {room}: raise model.queue_size, or a frame of it could never be admitted"
            )
    check(c.model.runtime in _RUNTIMES, "model.runtime", " | ".join(_RUNTIMES), c.model.runtime)
    check(1 <= c.model.threads <= 64, "model.threads", "1..64", c.model.threads)
    check(1 <= c.model.interpreter_threads <= 64, "model.interpreter_threads", "1..64", c.model.interpreter_threads)
    check(c.model.top_k >= 1, "model.top_k", ">= 1", c.model.top_k)
    check(c.model.queue_size >= 1, "model.queue_size", ">= 1", c.model.queue_size)
    check(0 <= c.cache.max_distance <= 16, "cache.max_distance", "0..16", c.cache.max_distance)
    check(c.cache.colour_tolerance >= 0, "cache.colour_tolerance", ">= 0", c.cache.colour_tolerance)
    check(c.cache.key_reuse_threshold >= 0, "cache.key_reuse_threshold", ">= 0", c.cache.key_reuse_threshold)
    check(1 <= c.cache.confirm_inferences <= 100, "cache.confirm_inferences", "1..100", c.cache.confirm_inferences)
    check(0.0 <= c.cache.undecided_margin <= 1.0, "cache.undecided_margin", "0..1", c.cache.undecided_margin)
    check(c.cache.memory_entries >= 1, "cache.memory_entries", ">= 1", c.cache.memory_entries)
    check(c.cache.disk_entries >= 1, "cache.disk_entries", ">= 1", c.cache.disk_entries)
    check(c.cache.disk_retry_s > 0, "cache.disk_retry_s", "> 0", c.cache.disk_retry_s)
    check(c.cache.disk_bytes >= 1024 * 1024, "cache.disk_bytes", ">= 1 MiB (1048576)", c.cache.disk_bytes)
    check(c.telemetry.interval_s > 0, "telemetry.interval_s", "> 0", c.telemetry.interval_s)
    check(c.record.max_bytes >= 1024 * 1024, "record.max_bytes", ">= 1 MiB (1048576)", c.record.max_bytes)
    validate_thermal(c, check)
    shelfconfig.validate_shelf(c, check)
    check(c.cache.hash in HASH_ALGORITHMS, "cache.hash", " | ".join(HASH_ALGORITHMS), c.cache.hash)


@lru_cache(maxsize=256)
def slot_boxes(camera: CameraConfig, width: int, height: int) -> tuple[Box, ...]:
    """The camera's slot boxes for a `width` x `height` frame.

    Explicit `slots` are used as given, a `grid` divides its region of interest (default: the whole frame) into
    rows x cols equal cells, and a camera with neither is one slot covering the frame. A box reaching outside the
    frame is a ConfigError naming the camera and the slot.
    """
    if camera.slots:
        boxes = camera.slots
    elif camera.grid is not None:
        rx, ry, rw, rh = camera.grid.roi or (0, 0, width, height)
        rows, cols = camera.grid.rows, camera.grid.cols
        xs = np.linspace(rx, rx + rw, cols + 1).round().astype(int)
        ys = np.linspace(ry, ry + rh, rows + 1).round().astype(int)
        boxes = tuple(
            (int(xs[c]), int(ys[r]), int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]))
            for r in range(rows)
            for c in range(cols)
        )
        if any(w < 1 or h < 1 for _, _, w, h in boxes):
            raise ConfigError(f"Camera '{camera.id}': grid {rows}x{cols} is finer than its {rw}x{rh} region")
    else:
        boxes = ((0, 0, width, height),)
    for i, (x, y, w, h) in enumerate(boxes):
        if x + w > width or y + h > height:
            expected = (
                f" (its slots are configured for {camera.width}x{camera.height} frames)"
                if camera.width and camera.height and (camera.width, camera.height) != (width, height)
                else ""
            )
            raise ConfigError(
                f"Camera '{camera.id}' slot {i} [{x}, {y}, {w}, {h}] lies outside its {width}x{height} frame" + expected
            )
    return boxes
