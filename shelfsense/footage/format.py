"""Footage on disk: ShelfSense recordings, folders of frames and video files, plus ground-truth files.

Everything is read lazily, one frame at a time, so a long recording never has to fit in memory
(the Pi has 1-4 GB shared with the cache). The recording layout and the truth format are described
in docs/footage.md.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
DIGITS = re.compile(r"(\d+)")


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
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(DIGITS.split(name))]


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


def segment_dirs(folder: Path) -> list[Path]:
    """Recording parts in reading order: the folder itself (flat layout) or its seg-NNNNNN folders."""
    if (folder / INDEX_NAME).is_file():
        return [folder]
    segments = [p for p in folder.glob(f"{SEGMENT_PREFIX}*") if (p / INDEX_NAME).is_file()]
    return sorted(segments, key=lambda p: natural_key(p.name))


def index_entries(index: Path) -> Iterator[tuple[int, dict[str, Any]]]:
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
        for segment in segment_dirs(self.path):
            try:
                for lineno, entry in index_entries(segment / INDEX_NAME):
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
                raise FileNotFoundError(f"{file} is listed in {segment / INDEX_NAME}:{lineno} but missing") from None
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
            1 for _, _, entry in self._entries() if self.camera is None or str(entry.get("camera", "")) == self.camera
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

        from shelfsense.footage.jpeg import encode_jpeg

        cap = cv2.VideoCapture(str(self.path))
        try:
            for i, (t, image) in enumerate(video_frames(cap, self.fps)):
                try:
                    data = encode_jpeg(image, self.jpeg_quality)
                except ValueError:
                    raise ValueError(f"{self.path}: frame {i} could not be re-encoded to JPEG") from None
                yield Frame(self.camera, i, round(t, 6), data, "image/jpeg")
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


def open_footage(path: str | Path, *, fps: float = 2.0, jpeg_quality: int = 90, camera: str | None = None) -> Footage:
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
        if segment_dirs(path):
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
