"""The recording writer: frames posted to the service appended to a recording folder (docs/footage.md)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shelfsense.config import check_camera_id
from shelfsense.footage.format import (
    DIGITS,
    EXTENSIONS,
    INDEX_NAME,
    META_NAME,
    SEGMENT_PREFIX,
    RecordingFootage,
    index_entries,
    segment_dirs,
    sniff_content_type,
)


def _wall_iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RecordingWriter:
    """Appends posted frames to a recording folder, optionally capped at `max_bytes` by rotation.

    Without `max_bytes` the layout is flat (DIR/index.jsonl + DIR/frames/...). With it, frames go
    into DIR/seg-NNNNNN/ folders of about `segment_bytes` each (default max_bytes / 16), and the
    oldest segment is deleted whenever the total exceeds `max_bytes`. Reopening an existing
    recording appends to it, and its first frame is dated one frame interval after the last one
    recorded, whatever the caller's clock says. Writes are serialised by a lock, so executor
    threads may share one writer; two writers on one folder are not supported.
    `started` fixes the wall clock of t = 0 (reproducible output); by default it is now.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        max_bytes: int | None = None,
        cameras: Iterable[str] | None = None,
        segment_bytes: int | None = None,
        source: str = "shelfsense",
        started: datetime | None = None,
        fsync: bool = False,
    ) -> None:
        self.folder = Path(folder)
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or (max(1, max_bytes // 16) if max_bytes else None)
        self.allowed = None if cameras is None else {check_camera_id(c) for c in cameras}
        self.fsync = fsync
        self._closed = False
        self._lock = threading.Lock()
        self._clock_start = time.monotonic()
        self._started = started
        self._resume_at: float | None = None  # t due to the first frame of a continued recording
        self._t_shift = 0.0
        self._seq = 0
        self._made_dirs: set[Path] = set()

        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"recording folder {self.folder} is a file")
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = segment_dirs(self.folder)
        flat = (self.folder / INDEX_NAME).is_file()
        if not existing and any(self.folder.iterdir()):
            raise FileExistsError(f"{self.folder} is not empty and holds no recording; pick another folder")
        if flat and max_bytes is not None:
            raise ValueError(
                f"{self.folder} holds a recording without a size cap, which cannot be continued with one; "
                "continue it without a cap or record into another folder"
            )
        self.segmented = max_bytes is not None or (bool(existing) and not flat)

        meta = RecordingFootage(self.folder).meta if existing else {}
        self._cameras: dict[str, None] = dict.fromkeys(str(c) for c in meta.get("cameras", []) or [])
        self._created = str(meta.get("created") or _wall_iso(started or datetime.now(UTC)))
        self._source = str(meta.get("source") or source)

        # Segment sizes count frame bytes plus index lines: what the cap is meant to bound.
        self._segments: list[list[Any]] = [[d, _tree_bytes(d)] for d in existing] if self.segmented else []
        if existing:
            self._resume(existing)
        if self.segmented and not self._segments:
            self._segments.append([self.folder / f"{SEGMENT_PREFIX}000001", 0])
        current = self._segments[-1][0] if self.segmented else self.folder
        self._index = self._open_index(current)
        self._write_meta()

    def _resume(self, parts: list[Path]) -> None:
        index = parts[-1] / INDEX_NAME
        data = index.read_bytes()
        if data and not data.endswith(b"\n"):
            # Cut a half-written last line so the next append does not glue onto it.
            with index.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        # The newest frames may sit in an earlier part when the last one was just started.
        times: list[float] = []  # t of the last two frames, oldest first
        for part in reversed(parts):
            last_entry: dict[str, Any] | None = None
            count = 0
            part_times: list[float] = []
            for _, entry in index_entries(part / INDEX_NAME):
                last_entry = entry
                count += 1
                part_times = [*part_times[-1:], float(entry.get("t", 0.0))]
            if last_entry is None:
                continue
            if not times:
                digits = DIGITS.findall(Path(last_entry["file"]).stem)
                self._seq = int(digits[-1]) + 1 if digits else count
            times = (part_times + times)[-2:]
            if len(times) == 2:
                break
        if times:
            # One more frame interval, so the next frame neither shares the last one's t nor jumps ahead.
            self._resume_at = times[-1] + (max(0.0, times[-1] - times[0]) if len(times) == 2 else 0.0)

    def _open_index(self, directory: Path) -> Any:
        directory.mkdir(parents=True, exist_ok=True)
        return (directory / INDEX_NAME).open("a", encoding="utf-8", newline="\n")

    def _write_meta(self) -> None:
        meta = {"created": self._created, "source": self._source, "cameras": list(self._cameras)}
        if self.max_bytes is not None:
            meta["max_bytes"] = self.max_bytes
        tmp = self.folder / (META_NAME + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.folder / META_NAME)

    def write(
        self,
        camera: str,
        data: bytes,
        content_type: str,
        t: float | None = None,
        wall: datetime | None = None,
    ) -> bool:
        """Append one frame; False when `camera` is not among the cameras this writer keeps.

        `t` is seconds on the caller's clock (default: since the writer opened). A continued recording
        shifts this clock so that its first frame follows the last recorded one: callers such as
        `shelfsense record` start at 0 in every run.
        """
        with self._lock:
            return self._write(camera, data, content_type, t, wall)

    def _write(self, camera: str, data: bytes, content_type: str, t: float | None, wall: datetime | None) -> bool:
        if self._closed:
            raise ValueError(f"recording writer for {self.folder} is closed")
        if self.allowed is not None and camera not in self.allowed:
            return False
        check_camera_id(camera)
        if content_type not in EXTENSIONS:
            # Multipart posts and aliases such as image/jpg: the bytes tell what the image is.
            content_type = sniff_content_type(data, content_type)
        ext = EXTENSIONS.get(content_type)
        if ext is None:
            kinds = ", ".join(EXTENSIONS)
            raise ValueError(f"content type {content_type!r} cannot be recorded (only {kinds})")
        if t is None:
            t = time.monotonic() - self._clock_start
        if self._resume_at is not None:
            self._t_shift, self._resume_at = self._resume_at - t, None
        t = t + self._t_shift
        if wall is None:
            wall = self._started + timedelta(seconds=t) if self._started is not None else datetime.now(UTC)

        if self.segmented and self._segments[-1][1] >= (self.segment_bytes or 0) > 0:
            self._roll()
        directory = self._segments[-1][0] if self.segmented else self.folder
        rel = f"frames/{camera}/{self._seq:09d}{ext}"
        frame_dir = directory / "frames" / camera
        if frame_dir not in self._made_dirs:
            frame_dir.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(frame_dir)
        # The image goes first: an index line then always points at a complete file.
        (directory / rel).write_bytes(data)
        entry = {
            "camera": camera,
            "t": round(float(t), 6),
            "wall": _wall_iso(wall),
            "file": rel,
            "content_type": content_type,
            "bytes": len(data),
        }
        line = json.dumps(entry) + "\n"
        self._index.write(line)
        self._index.flush()
        if self.fsync:
            os.fsync(self._index.fileno())
        self._seq += 1
        if self.segmented:
            self._segments[-1][1] += len(data) + len(line.encode("utf-8"))
            self._enforce_cap()
        if camera not in self._cameras:
            self._cameras[camera] = None
            self._write_meta()
        return True

    def _roll(self) -> None:
        self._index.close()
        last = self._segments[-1][0]
        number = int(DIGITS.findall(last.name)[-1]) + 1
        directory = self.folder / f"{SEGMENT_PREFIX}{number:06d}"
        self._segments.append([directory, 0])
        self._index = self._open_index(directory)

    def _enforce_cap(self) -> None:
        assert self.max_bytes is not None
        # The segment being written is never deleted, so a single huge frame still gets recorded.
        while len(self._segments) > 1 and sum(size for _, size in self._segments) > self.max_bytes:
            oldest, _ = self._segments.pop(0)
            shutil.rmtree(oldest, ignore_errors=True)
            self._made_dirs = {d for d in self._made_dirs if oldest not in d.parents}

    @property
    def total_bytes(self) -> int:
        """Bytes of frames and index lines currently kept (segmented layout only; 0 otherwise)."""
        return sum(size for _, size in self._segments)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._index.close()
            self._write_meta()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tree_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
