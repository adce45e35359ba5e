"""What one bench run works on: the footage, its camera, the slot boxes, the model and the truth."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from shelfsense.config import CameraConfig, Config, load_config, parse_config, slot_boxes
from shelfsense.errors import BadImageError, ConfigError
from shelfsense.footage import Footage, TruthRow, open_footage, read_truth
from shelfsense.recognition.decode import decode_frame
from shelfsense.synth.layout import CAMERA_TOML, TRUTH_NAME  # what synth (or the user) leaves beside footage
from shelfsense.types import Box

__all__ = ["TRUTH_NAME", "Setup", "resolve_setup"]

Truth = dict[int, tuple[str | None, ...]]  # Frame.index -> label per slot (None: no product to see)


@dataclass(frozen=True)
class Setup:
    footage: Path
    camera: str  # id the slots are configured under (and the recording camera read, when it has ids)
    read_camera: str | None  # camera filter passed to open_footage
    config: Config  # with `camera` in config.cameras
    slots_from: str
    boxes: tuple[Box, ...]
    frame_size: tuple[int, int]
    truth: Truth | None
    truth_path: Path | None
    # Shelf-state truth, when the truth rows carry it (synth footage): states by frame, events (type, slot, frame)
    shelf_truth: tuple[dict[int, tuple[str, ...]], list[tuple[str, int, int]]] | None = None

    def open(self) -> Footage:
        return open_footage(self.footage, camera=self.read_camera)

    def with_config(self, config: Config) -> Setup:
        return dataclasses.replace(self, config=config)


def _beside(footage: Path, name: str) -> Path:
    return (footage if footage.is_dir() else footage.parent) / name


def _camera_toml(path: Path) -> dict[str, CameraConfig]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from None
    return parse_config({"cameras": data.get("cameras", {})}, base_dir=path.parent, source=path).cameras


def resolve_setup(
    footage: str | Path,
    *,
    config: Config | None = None,
    config_given: bool = False,
    camera: str | None = None,
    truth: str | Path | None = None,
) -> Setup:
    """Which camera, which slot boxes, which model and which truth the benchmark uses (see the module doc)."""
    path = Path(footage)
    config = config if config is not None else load_config()
    listed, first = _first_frame(path, camera)
    cid, cam, slots_from = _choose_camera(path, config, config_given, camera, listed)
    config = config.replace(cameras={**config.cameras, cid: cam})
    try:
        height, width = decode_frame(first).shape[:2]
    except BadImageError:
        raise ConfigError(f"The first frame of {path} is not a decodable image") from None
    boxes = slot_boxes(cam, width, height)
    truth_path = Path(truth) if truth is not None else _beside(path, TRUTH_NAME)
    rows = shelf_truth = None
    if truth is not None or truth_path.is_file():
        wanted = _truth_rows(truth_path, cid, listed, boxes, slots_from)
        rows = {r.frame: r.slots for r in wanted}
        if all(r.states is not None for r in wanted):
            events = [(str(e["type"]), int(e["slot"]), r.frame) for r in wanted for e in r.events]
            shelf_truth = ({r.frame: r.states for r in wanted}, events)
    return Setup(
        path,
        cid,
        camera if camera is not None else (cid if listed else None),
        config,
        slots_from,
        boxes,
        (width, height),
        rows,
        truth_path if rows is not None else None,
        shelf_truth,
    )


def _first_frame(path: Path, camera: str | None) -> tuple[list[str], bytes]:
    """The footage's named cameras and the bytes of its first frame (of `camera`, when given)."""
    try:
        opened = open_footage(path, camera=camera)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot open footage: {exc}") from None
    with opened:
        listed = [c for c in opened.cameras if c]
        if camera is None and len(listed) > 1:
            raise ConfigError(f"Footage {path} holds cameras {', '.join(listed)}: choose one with --camera")
        first = next(iter(opened), None)
    if first is None:
        raise ConfigError(f"Footage {path} holds no frames{f' of camera {camera!r}' if camera else ''}")
    return listed, first.data


def _choose_camera(
    path: Path, config: Config, config_given: bool, camera: str | None, listed: list[str]
) -> tuple[str, CameraConfig, str]:
    """The camera id, its slots and where they came from.

    An explicit --config wins, then the slots synth (or the user) left beside the footage, then the bundled
    config's camera of that id, else one slot covering the frame.
    """
    beside = _beside(path, CAMERA_TOML)
    toml_cameras = _camera_toml(beside) if beside.is_file() else {}
    cid = camera or (listed[0] if listed else None)
    if cid is None:
        cid = next(iter(toml_cameras)) if len(toml_cameras) == 1 else "footage"
    if config_given and cid in config.cameras:
        return cid, config.cameras[cid], "--config"
    if cid in toml_cameras:
        return cid, toml_cameras[cid], str(beside)
    if cid in config.cameras:
        return cid, config.cameras[cid], str(config.source or "config")
    return cid, CameraConfig(id=cid), "whole frame"


def _truth_rows(path: Path, cid: str, listed: list[str], boxes: tuple[Box, ...], slots_from: str) -> list[TruthRow]:
    try:
        all_rows = read_truth(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read truth: {exc}") from None
    # Truth of a one-camera folder or video may carry any camera name; a recording's must match.
    wanted: list[TruthRow] = [r for r in all_rows if r.camera == cid] or ([] if listed else all_rows)
    bad = next((r for r in wanted if len(r.slots) != len(boxes)), None)
    if bad is not None:
        raise ConfigError(
            f"{path}: frame {bad.frame} has {len(bad.slots)} slots but camera '{cid}' has {len(boxes)} "
            f"(slots from {slots_from})"
        )
    if not wanted:
        raise ConfigError(f"{path} has no rows for camera '{cid}'")
    return wanted
