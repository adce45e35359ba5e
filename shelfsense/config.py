"""Configuration: parsed once from TOML into frozen dataclasses, then passed down.

A user's file states only what it changes; everything else takes the defaults below, which `config.toml` at the
top of the repository documents one for one (a test keeps the two equal). Unknown keys and bad values raise
`ConfigError` naming the key. Relative paths are resolved against the directory of the file that states them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_CONFIG = PROJECT_ROOT / "config.toml"
BUNDLED_MODEL = PROJECT_ROOT / "models" / "grocery_int8.tflite"

Box = tuple[int, int, int, int]


# One rule for camera ids, shared by the config, HTTP, recordings and replay: ids become directory names inside
# a recording, so they must not be able to escape it.
CAMERA_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")


def check_camera_id(camera: str) -> str:
    if not CAMERA_ID.match(camera):
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
    max_pending_frames: int = 32  # frames being processed at once; more answer 503


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
    memory_entries: int = 20_000
    disk_path: Path | None = PROJECT_ROOT / "cache"  # None (or "") keeps the cache in memory only
    disk_bytes: int = 256 * 1024 * 1024  # 256 MiB; diskcache evicts least recently stored beyond it
    disk_entries: int = 600_000  # at most this many disk entries (and keys in its in-memory index); see config.toml


@dataclass(frozen=True, kw_only=True)
class TelemetryConfig:
    sysfs_root: Path = Path("/sys")
    vcgencmd: str = "vcgencmd"
    interval_s: float = 2.0


@dataclass(frozen=True, kw_only=True)
class RecordConfig:
    enabled: bool = False
    folder: Path = PROJECT_ROOT / "recordings"
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


@dataclass(frozen=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
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
}
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
    return parse_config(data, base_dir=path.resolve().parent, source=path)


def parse_config(data: dict[str, Any], *, base_dir: Path | None = None, source: Path | None = None) -> Config:
    base_dir = base_dir or Path.cwd()
    unknown = set(data) - set(_SECTIONS) - {"cameras"}
    if unknown:
        raise ConfigError(f"Unknown config section(s): {', '.join(sorted(unknown))}")
    sections = {name: _section(name, cls, data.get(name, {}), base_dir) for name, cls in _SECTIONS.items()}
    cameras_raw = data.get("cameras", {})
    if not isinstance(cameras_raw, dict):
        raise ConfigError("Config 'cameras' must be a table of [cameras.<id>] tables")
    cameras = {cid: _camera(cid, raw) for cid, raw in cameras_raw.items()}
    config = Config(**sections, cameras=cameras, source=source)
    _validate(config)
    return config


def _section(name: str, cls: type, raw: Any, base_dir: Path) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"Config '{name}' must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(fields)
    if unknown:
        raise ConfigError(f"Unknown config key(s) {', '.join(f'{name}.{k}' for k in sorted(unknown))}")
    values = {}
    for key, value in raw.items():
        values[key] = _coerce(f"{name}.{key}", fields[key].type, value, base_dir)
    return cls(**values)


def _coerce(key: str, type_: Any, value: Any, base_dir: Path) -> Any:
    type_name = str(type_)
    if "Path" in type_name:
        if value in ("", None) and "None" in type_name:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"Config '{key}' must be a path string, got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base_dir / p).resolve()
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"Config '{key}' must be true or false, got {value!r}")
        return value
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Config '{key}' must be an integer, got {value!r}")
        return value
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"Config '{key}' must be a number, got {value!r}")
        return float(value)
    if type_name == "str":
        if not isinstance(value, str):
            raise ConfigError(f"Config '{key}' must be a string, got {value!r}")
        return value
    if type_name.startswith("tuple[str"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"Config '{key}' must be a list of strings, got {value!r}")
        return tuple(value)
    raise AssertionError(f"no coercion for {key}: {type_name}")  # pragma: no cover - programming error


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
    known = {"slots", "grid", "token", "width", "height"}
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
    camera = CameraConfig(id=cid, slots=slots, grid=grid, token=token, **size)
    if camera.width and camera.height:
        from .slots import slot_boxes  # late import: slots depends on this module's types

        slot_boxes(camera, camera.width, camera.height)
    return camera


def _validate(c: Config) -> None:
    def check(ok: bool, key: str, rule: str, value: Any) -> None:
        if not ok:
            raise ConfigError(f"Config '{key}' must be {rule}, got {value!r}")

    check(1 <= c.server.port <= 65535, "server.port", "1..65535", c.server.port)
    check(c.server.max_body_bytes >= 1024, "server.max_body_bytes", ">= 1024", c.server.max_body_bytes)
    check(c.server.stats_window_s > 0, "server.stats_window_s", "> 0", c.server.stats_window_s)
    check(c.server.max_pending_frames >= 1, "server.max_pending_frames", ">= 1", c.server.max_pending_frames)
    check(c.model.runtime in _RUNTIMES, "model.runtime", " | ".join(_RUNTIMES), c.model.runtime)
    check(1 <= c.model.threads <= 64, "model.threads", "1..64", c.model.threads)
    check(1 <= c.model.interpreter_threads <= 64, "model.interpreter_threads", "1..64", c.model.interpreter_threads)
    check(c.model.top_k >= 1, "model.top_k", ">= 1", c.model.top_k)
    check(c.model.queue_size >= 1, "model.queue_size", ">= 1", c.model.queue_size)
    check(0 <= c.cache.max_distance <= 16, "cache.max_distance", "0..16", c.cache.max_distance)
    check(c.cache.colour_tolerance >= 0, "cache.colour_tolerance", ">= 0", c.cache.colour_tolerance)
    check(c.cache.key_reuse_threshold >= 0, "cache.key_reuse_threshold", ">= 0", c.cache.key_reuse_threshold)
    check(1 <= c.cache.confirm_inferences <= 100, "cache.confirm_inferences", "1..100", c.cache.confirm_inferences)
    check(c.cache.memory_entries >= 1, "cache.memory_entries", ">= 1", c.cache.memory_entries)
    check(c.cache.disk_entries >= 1, "cache.disk_entries", ">= 1", c.cache.disk_entries)
    check(c.cache.disk_bytes >= 1024 * 1024, "cache.disk_bytes", ">= 1 MiB (1048576)", c.cache.disk_bytes)
    check(c.telemetry.interval_s > 0, "telemetry.interval_s", "> 0", c.telemetry.interval_s)
    check(c.record.max_bytes >= 1024 * 1024, "record.max_bytes", ">= 1 MiB (1048576)", c.record.max_bytes)
    from .hashing import Hasher  # the hashing module owns the list of algorithms

    check(c.cache.hash in Hasher.ALGORITHMS, "cache.hash", " | ".join(Hasher.ALGORITHMS), c.cache.hash)
