"""The [shelf] and [mqtt] config sections and the per-camera planogram (issue 12), parsed by config.py.

Kept in a module of their own so config.py stays one screenful per concern; config.py owns the parsing rules
(`_section` coerces these dataclasses like every other section) and calls `validate_shelf` from its `_validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shelfsense.errors import ConfigError

__all__ = [
    "SHELF_SECTIONS",
    "MqttConfig",
    "ShelfConfig",
    "check_planogram",
    "parse_planogram",
    "shelf_state_path",
    "validate_shelf",
]


@dataclass(frozen=True, kw_only=True)
class ShelfConfig:
    enabled: bool = True
    unknown_below: float = 0.3  # top score under which a product is `unknown`
    empty_edges: float = 0.1  # edge share under which a slot is `empty` (product photos measure >= 0.37)
    changed_share: float = 0.04  # share of a slot's thumbnail that must change to count as motion
    confirm_frames: int = 3  # a new slot state must hold this many frames ...
    confirm_s: float = 10.0  # ... or this long (over at least two frames) to become the shelf state
    blocked_s: float = 30.0  # camera_blocked when most slots stay occluded this long
    state_path: Path | None = None  # None: a "shelf" folder beside cache.disk_path (memory only without one)
    events_max: int = 10_000  # events kept in the on-disk log (and readable with a cursor)
    history_s: float = 3600.0  # GET /v1/stats/history keeps this much ...
    history_step_s: float = 5.0  # ... at this resolution
    snapshot_width: int = 320  # pixels; the dashboard's latest frame per camera


@dataclass(frozen=True, kw_only=True)
class MqttConfig:
    host: str = ""  # empty: MQTT off
    port: int = 1883
    username: str = ""
    password: str = ""
    topic_prefix: str = "shelfsense"
    client_id: str = "shelfsense"
    qos: int = 1
    outbox: int = 1000  # messages kept while the broker is away; the oldest are dropped beyond it
    reconnect_s: float = 2.0


SHELF_SECTIONS = {"shelf": ShelfConfig, "mqtt": MqttConfig}


def shelf_state_path(config: Any) -> Path | None:
    """Where the shelf state and event log live: `shelf.state_path`, else beside the disk cache, else nowhere."""
    if config.shelf.state_path is not None:
        return config.shelf.state_path
    disk = config.cache.disk_path if config.cache.enabled else None
    return disk.parent / "shelf" if disk is not None else None


def check_planogram(where: str, planogram: tuple[str, ...], slots: int) -> None:
    if planogram and len(planogram) != slots:
        raise ConfigError(f"Config '{where}.planogram' names {len(planogram)} products for {slots} slots")


def parse_planogram(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"Config '{where}.planogram' must be a list of product labels (\"\" for any), got {value!r}")
    return tuple(value)


def validate_shelf(c: Any, check: Callable[[bool, str, str, Any], None]) -> None:
    s, m = c.shelf, c.mqtt
    check(c.cache.reverify_s >= 0, "cache.reverify_s", ">= 0", c.cache.reverify_s)
    check(c.cache.reverify_hits >= 0, "cache.reverify_hits", ">= 0", c.cache.reverify_hits)
    check(0 <= s.unknown_below <= 1, "shelf.unknown_below", "0..1", s.unknown_below)
    check(0 <= s.empty_edges <= 1, "shelf.empty_edges", "0..1", s.empty_edges)
    check(0 < s.changed_share <= 1, "shelf.changed_share", "in (0, 1]", s.changed_share)
    check(1 <= s.confirm_frames <= 1000, "shelf.confirm_frames", "1..1000", s.confirm_frames)
    check(s.confirm_s >= 0, "shelf.confirm_s", ">= 0 (0: frames only)", s.confirm_s)
    check(s.blocked_s > 0, "shelf.blocked_s", "> 0", s.blocked_s)
    check(s.events_max >= 10, "shelf.events_max", ">= 10", s.events_max)
    check(s.history_step_s > 0, "shelf.history_step_s", "> 0", s.history_step_s)
    check(s.history_s >= s.history_step_s, "shelf.history_s", ">= shelf.history_step_s", s.history_s)
    check(16 <= s.snapshot_width <= 4096, "shelf.snapshot_width", "16..4096", s.snapshot_width)
    check(1 <= m.port <= 65535, "mqtt.port", "1..65535", m.port)
    check(m.qos in (0, 1, 2), "mqtt.qos", "0, 1 or 2", m.qos)
    check(m.outbox >= 1, "mqtt.outbox", ">= 1", m.outbox)
    check(m.reconnect_s > 0, "mqtt.reconnect_s", "> 0", m.reconnect_s)
    check(
        bool(m.topic_prefix) and not set(m.topic_prefix) & set("#+"),
        "mqtt.topic_prefix",
        "non-empty, no # or +",
        m.topic_prefix,
    )
