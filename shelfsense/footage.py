"""Footage on disk: ShelfSense recordings, folders of frames and video files, plus ground-truth files.

Everything is read lazily, one frame at a time, so a long recording never has to fit in memory
(the Pi has 1-4 GB shared with the cache). The recording layout and the truth format are described
in docs/footage.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .config import check_camera_id

INDEX_NAME = "index.jsonl"
META_NAME = "meta.json"
SEGMENT_PREFIX = "seg-"
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}
VIDEO_SUFFIXES = {
    ".mp4",
    ".m4v",
    ".avi",
    ".mjpeg",
    ".mjpg",
    ".mkv",
    ".mov",
    ".webm",
    ".mpg",
    ".mpeg",
    ".h264",
}
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True, slots=True)
class Frame:
    camera: str  # camera id ("" when the source does not say)
    index: int  # 0-based frame number within the footage
    t: float  # seconds since the footage start
    data: bytes  # encoded image bytes (JPEG/PNG) exactly as stored
    content_type: str  # "image/jpeg" | "image/png"


def natural_key(name: str) -> list[Any]:
    """Sort key under which "frame2" < "frame10"."""
    # re.split with a capture group alternates text, number, text..., so lists compare type-aligned.
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(_DIGITS.split(name))]


def sniff_content_type(data: bytes, fallback: str) -> str:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    return fallback


class Footage:
    """An iterable of Frame read lazily from disk; iterate as often as needed, close when done."""

    name: str

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name
        self._live: weakref.WeakSet[Any] = weakref.WeakSet()
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise ValueError(f"footage {self.path} is closed")
        frames = self._frames()
        self._live.add(frames)
        return frames

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def cameras(self) -> list[str]:
        return []

    @property
    def length(self) -> int | None:
        """Number of frames, or None when the source cannot tell without decoding it all."""
        return None

    def __len__(self) -> int:
        n = self.length
        if n is None:
            raise TypeError(f"the number of frames in {self.path} is not known before reading it")
        return n

    def __bool__(self) -> bool:
        # Without this, truth-testing would fall back to __len__ and raise for unknown lengths.
        return True

    def close(self) -> None:
        """Release the files and decoders held by iterations still in progress."""
        self._closed = True
        for frames in list(self._live):
            frames.close()

    def __enter__(self) -> Footage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def _segment_dirs(folder: Path) -> list[Path]:
    """Recording parts in reading order: the folder itself (flat layout) or its seg-NNNNNN folders."""
    if (folder / INDEX_NAME).is_file():
        return [folder]
    segments = [p for p in folder.glob(f"{SEGMENT_PREFIX}*") if (p / INDEX_NAME).is_file()]
    return sorted(segments, key=lambda p: natural_key(p.name))


def _index_entries(index: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, entry) pairs; a truncated last line (crash while appending) is skipped."""
    with index.open("r", encoding="utf-8", newline="\n") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as e:
                if not line.endswith("\n"):
                    return  # the writer died mid-line; everything before it is intact
                raise ValueError(f"{index}:{lineno}: not a JSON line ({e.msg})") from None
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise ValueError(f'{index}:{lineno}: an index line needs at least a "file" field')
            yield lineno, entry


class RecordingFootage(Footage):
    """A ShelfSense recording folder (flat or segmented); `camera` keeps only that camera's frames."""

    def __init__(self, path: Path, camera: str | None = None) -> None:
        super().__init__(path)
        self.camera = camera
        self.meta = self._read_meta()

    def _read_meta(self) -> dict[str, Any]:
        meta_path = self.path / META_NAME
        if not meta_path.is_file():
            return {}
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{meta_path}: not valid JSON ({e})") from None
        return meta if isinstance(meta, dict) else {}

    def _entries(self) -> Iterator[tuple[Path, int, dict[str, Any]]]:
        for segment in _segment_dirs(self.path):
            try:
                for lineno, entry in _index_entries(segment / INDEX_NAME):
                    yield segment, lineno, entry
            except FileNotFoundError:
                continue  # the writer rotated this segment away while we were listing

    def _frames(self) -> Iterator[Frame]:
        index = -1
        for segment, lineno, entry in self._entries():
            index += 1  # counted before filtering so a frame keeps its number whatever the camera filter
            camera = str(entry.get("camera", ""))
            if self.camera is not None and camera != self.camera:
                continue
            file = segment / entry["file"]
            try:
                data = file.read_bytes()
            except FileNotFoundError:
                if not segment.exists():
                    continue  # rotated away mid-read by a live writer
                raise FileNotFoundError(
                    f"{file} is listed in {segment / INDEX_NAME}:{lineno} but missing"
                ) from None
            fallback = IMAGE_TYPES.get(file.suffix.lower(), "image/jpeg")
            yield Frame(
                camera=camera,
                index=index,
                t=float(entry.get("t", 0.0)),
                data=data,
                content_type=str(entry.get("content_type") or fallback),
            )

    @property
    def cameras(self) -> list[str]:
        if self.camera is not None:
            return [self.camera]
        listed = self.meta.get("cameras")
        if isinstance(listed, list) and listed:
            return [str(c) for c in listed]
        seen: dict[str, None] = {}
        for _, _, entry in self._entries():
            seen.setdefault(str(entry.get("camera", "")), None)
        return list(seen)

    @property
    def length(self) -> int:
        return sum(
            1
            for _, _, entry in self._entries()
            if self.camera is None or str(entry.get("camera", "")) == self.camera
        )


class FolderFootage(Footage):
    """A folder of JPEG/PNG files taken in natural name order; t = index / fps."""

    def __init__(self, path: Path, files: list[Path], fps: float, camera: str) -> None:
        super().__init__(path)
        self.files = files
        self.fps = fps
        self.camera = camera

    def _frames(self) -> Iterator[Frame]:
        for i, file in enumerate(self.files):
            # Corrupt files are passed on untouched: the server has to see exactly what was recorded.
            data = file.read_bytes()
            yield Frame(
                camera=self.camera,
                index=i,
                t=i / self.fps,
                data=data,
                content_type=sniff_content_type(data, IMAGE_TYPES[file.suffix.lower()]),
            )

    @property
    def cameras(self) -> list[str]:
        return [self.camera] if self.camera else []

    @property
    def length(self) -> int:
        return len(self.files)


class VideoFootage(Footage):
    """A video file decoded with OpenCV; every frame is re-encoded to JPEG at `jpeg_quality`."""

    def __init__(self, path: Path, fps: float, jpeg_quality: int, camera: str) -> None:
        import cv2

        super().__init__(path)
        self.camera = camera
        self.jpeg_quality = jpeg_quality
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                raise ValueError(f"{path}: OpenCV cannot open this video (unknown or unsupported format)")
            ok, _ = cap.read()
            if not ok:
                raise ValueError(f"{path}: the video has no decodable frames")
            video_fps = cap.get(cv2.CAP_PROP_FPS)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            cap.release()
        # Containers without a usable rate fall back to the caller's fps for timestamps.
        self.fps = video_fps if 0 < video_fps < 1000 else fps
        self._count = count if count > 0 else None

    def _frames(self) -> Iterator[Frame]:
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        params = [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)]
        try:
            for i, (t, image) in enumerate(video_frames(cap, self.fps)):
                ok, buf = cv2.imencode(".jpg", image, params)
                if not ok:
                    raise ValueError(f"{self.path}: frame {i} could not be re-encoded to JPEG")
                yield Frame(self.camera, i, round(t, 6), buf.tobytes(), "image/jpeg")
        finally:
            cap.release()

    @property
    def cameras(self) -> list[str]:
        return [self.camera] if self.camera else []

    @property
    def length(self) -> int | None:
        """Frame count as the container states it (an estimate for some formats)."""
        return self._count


def video_frames(cap: Any, fps: float) -> Iterator[tuple[float, Any]]:
    """(seconds since the first frame, BGR image) of an opened cv2.VideoCapture of a file, in order.

    Times come from the container's timestamps; some containers carry none (0 throughout), and then the
    stated frame rate dates the frames, or `fps` when the container states no usable rate either.
    """
    import cv2

    stated = cap.get(cv2.CAP_PROP_FPS)
    rate = stated if 0 < stated < 1000 else fps
    first_ms: float | None = None
    index = 0
    while True:
        ok, image = cap.read()
        if not ok:
            return
        pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        if first_ms is None:
            first_ms = pos_ms
        yield ((pos_ms - first_ms) / 1000.0 if pos_ms > first_ms or index == 0 else index / rate), image
        index += 1


def open_footage(
    path: str | Path, *, fps: float = 2.0, jpeg_quality: int = 90, camera: str | None = None
) -> Footage:
    """Open a recording folder, a folder of JPEG/PNG frames or a video file.

    `camera` selects one camera of a recording, and names the camera of a folder or video
    (whose frames otherwise carry camera ""). `fps` dates frames that have no timestamps.
    """
    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be within 1..100, got {jpeg_quality}")
    if not path.exists():
        raise FileNotFoundError(f"footage {path} does not exist")
    if path.is_dir():
        if _segment_dirs(path):
            return RecordingFootage(path, camera)
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_TYPES]
        if not files:
            raise ValueError(f"footage folder {path} holds no {INDEX_NAME} and no .jpg/.jpeg/.png frames")
        files.sort(key=lambda p: natural_key(p.name))
        return FolderFootage(path, files, fps, camera or "")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoFootage(path, fps, jpeg_quality, camera or "")
    raise ValueError(
        f"{path} is not footage ShelfSense reads: expected a recording folder, a folder of frames "
        f"or a video file ({', '.join(sorted(VIDEO_SUFFIXES))})"
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
        existing = _segment_dirs(self.folder)
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
            for _, entry in _index_entries(part / INDEX_NAME):
                last_entry = entry
                count += 1
                part_times = [*part_times[-1:], float(entry.get("t", 0.0))]
            if last_entry is None:
                continue
            if not times:
                digits = _DIGITS.findall(Path(last_entry["file"]).stem)
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

    def _write(
        self, camera: str, data: bytes, content_type: str, t: float | None, wall: datetime | None
    ) -> bool:
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
        number = int(_DIGITS.findall(last.name)[-1]) + 1
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


@dataclass(frozen=True, slots=True)
class TruthRow:
    camera: str
    frame: int  # Frame.index of the frame this row describes
    slots: tuple[str | None, ...]  # class per slot in camera-config order; None = empty or occluded


def write_truth(path: str | Path, rows: Iterable[TruthRow | Mapping[str, Any]]) -> int:
    """Write ground truth as JSON Lines; returns the number of rows written."""
    path = Path(path)
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            if isinstance(row, TruthRow):
                camera, frame, slots = row.camera, row.frame, list(row.slots)
            else:
                camera, frame, slots = str(row["camera"]), int(row["frame"]), list(row["slots"])
            f.write(json.dumps({"camera": camera, "frame": frame, "slots": slots}) + "\n")
            n += 1
    return n


def read_truth(path: str | Path) -> list[TruthRow]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"truth file {path} does not exist")
    rows = []
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                slots = raw["slots"]
                if not isinstance(slots, list) or not all(s is None or isinstance(s, str) for s in slots):
                    raise TypeError("slots must be a list of class names or null")
                rows.append(TruthRow(str(raw["camera"]), int(raw["frame"]), tuple(slots)))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: not a truth row ({e})") from None
    return rows


def footage_commands(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `footage` command's own subcommands, created on first use so several modules can add to it."""
    parser = subparsers.choices.get("footage")
    if parser is None:
        parser = subparsers.add_parser("footage", help="synthetic shelf footage with ground truth (synth)")
    commands = getattr(parser, "_shelfsense_commands", None)
    if commands is None:
        commands = parser.add_subparsers(dest="footage_command", metavar="COMMAND", required=True)
        parser._shelfsense_commands = commands  # type: ignore[attr-defined]
    return commands
