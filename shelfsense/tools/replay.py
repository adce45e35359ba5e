"""`shelfsense replay`: post recorded footage to a server as one or many cameras and measure what came back.

Each camera stream is one task with one request in flight, like a real camera, so a camera's frames
are answered in the order they were sent; `--concurrency` bounds the requests in flight across all
cameras. Footage is read lazily (one frame ahead per stream) and only a few numbers per frame are kept,
so a long recording replays in constant memory apart from those numbers.

Pace: `--speed 1.0` sends each frame at its recorded time (`Frame.t`), `2.0` twice as fast, `max` as fast
as answers come back. Hit rate counts slots served from a cache tier (memory or disk) in 200 answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shelfsense.client import FramePoster, check_server_url, slot_tier
from shelfsense.config import check_camera_id
from shelfsense.footage import Frame, RecordingFootage, open_footage, read_truth
from shelfsense.tools.replay_report import FrameRecord, ReplayReport
from shelfsense.tools.replay_shelf import ShelfTruth, event_cursor, score_replay
from shelfsense.types import Tier

__all__ = ["FrameRecord", "ReplayReport", "Stream", "plan_streams", "replay"]

Truth = dict[tuple[str, int], tuple[str | None, ...]]  # (recorded camera, Frame.index) -> label per slot


@dataclass(frozen=True)
class Stream:
    camera: str  # the id frames are posted as
    source_camera: str  # the camera id in the footage and the truth file
    path: Path
    select: str | None  # camera filter/name handed to open_footage


def plan_streams(
    footage: Sequence[str | Path], *, camera: str | None = None, cameras: int = 1, fps: float = 2.0
) -> list[Stream]:
    """The camera streams to replay: per footage (and per recorded camera), fanned out `cameras` times."""
    if cameras < 1:
        raise ValueError(f"--cameras must be at least 1, got {cameras}")
    streams: list[Stream] = []
    for item in footage:
        path = Path(item)
        with open_footage(path, fps=fps) as f:
            recorded = f.cameras
            if camera is not None and isinstance(f, RecordingFootage) and recorded and camera not in recorded:
                raise ValueError(f"recording {path} holds no camera {camera!r} (it has {', '.join(recorded)})")
        if camera is not None:
            sources = [(camera, camera)]
        elif recorded and all(recorded):
            sources = [(c, c) for c in recorded]
        else:
            sources = [(path.stem if _usable(path.stem) else "cam", None)]
        for source_camera, select in sources:
            for k in range(cameras):
                cid = source_camera if cameras == 1 else f"{source_camera}-{k}"
                check_camera_id(cid)
                streams.append(Stream(cid, source_camera, path, select))
    ids = [s.camera for s in streams]
    dupes = sorted({c for c in ids if ids.count(c) > 1})
    if dupes:
        raise ValueError(
            f"several streams would post as camera {', '.join(dupes)}: their order could not be checked; "
            "replay them separately or give them distinct camera ids"
        )
    return streams


def _usable(name: str) -> bool:
    try:
        check_camera_id(name)
    except ValueError:
        return False
    return True


async def replay(
    footage: Sequence[str | Path],
    url: str,
    *,
    camera: str | None = None,
    cameras: int = 1,
    speed: float | None = 1.0,
    concurrency: int | None = None,
    truth: str | Path | None = None,
    warmup: int = 1,
    token: str = "",
    fps: float = 2.0,
    timeout_s: float = 30.0,
    progress: bool = False,
    stop: asyncio.Event | None = None,
) -> ReplayReport:
    """Replay footage against the server at `url`; `speed` None = as fast as possible."""
    check_server_url(url)
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive (or max), got {speed}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    streams = plan_streams(footage, camera=camera, cameras=cameras, fps=fps)
    concurrency = concurrency or len(streams)
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    truth_map: Truth = {}
    shelf_truth: ShelfTruth = {}
    if truth is not None:
        rows = read_truth(truth)
        truth_map = {(row.camera, row.frame): row.slots for row in rows}
        shelf_truth = {(row.camera, row.frame): row for row in rows if row.states is not None}
    report = ReplayReport(
        url=url,
        speed=speed,
        concurrency=concurrency,
        warmup=warmup,
        cameras=[s.camera for s in streams],
        truth_rows=len(truth_map),
    )
    replayer = _Replayer(report, truth_map, fps=fps, stop=stop or asyncio.Event())
    bar = tqdm(
        total=_total_frames(streams, fps),
        desc="replay",
        unit="frame",
        file=sys.stderr,
        disable=not progress or not sys.stderr.isatty(),
    )
    cursor = await event_cursor(url, token) if shelf_truth else None
    try:
        async with FramePoster(url, token=token, timeout_s=timeout_s, limit=concurrency) as poster:
            await replayer.run(streams, poster, bar)
    finally:
        bar.close()
    if shelf_truth and not replayer.stop.is_set():
        pairs = [(s.camera, s.source_camera) for s in streams]
        report.shelf = await score_replay(url, token, cursor, pairs, report.records, shelf_truth)
    report.interrupted = replayer.stop.is_set()
    report.offered_fps = round(sum(replayer.rates), 3) if speed is not None and replayer.rates else None
    return report


class _Replayer:
    """One replay's shared state: the streams post through one poster, at most `concurrency` at a time."""

    def __init__(self, report: ReplayReport, truth: Truth, *, fps: float, stop: asyncio.Event) -> None:
        self.report = report
        self.truth = truth
        self.fps = fps
        self.speed = report.speed
        self.stop = stop
        self.semaphore = asyncio.Semaphore(report.concurrency)
        self.rates: list[float] = []  # offered frames per second of each stream
        self.running = Counter[str]()  # for the progress bar, without rescanning the records
        self.loop = asyncio.get_running_loop()
        self.start = self.loop.time()

    async def run(self, streams: Sequence[Stream], poster: FramePoster, bar: Any) -> None:
        self.start = self.loop.time()
        await asyncio.gather(*(self._stream(s, poster, bar) for s in streams))

    async def _stream(self, stream: Stream, poster: FramePoster, bar: Any) -> None:
        footage = open_footage(stream.path, fps=self.fps, camera=stream.select)
        frames = iter(footage)
        ahead = self.loop.run_in_executor(None, next, frames, None)  # reads overlap the request in flight
        first_t: float | None = None
        last_t = 0.0
        seq = 0
        try:
            while not self.stop.is_set():
                frame = await ahead
                if frame is None:
                    break
                ahead = self.loop.run_in_executor(None, next, frames, None)
                first_t = frame.t if first_t is None else first_t
                last_t = frame.t
                if not await self._pace(frame.t - first_t):
                    break
                async with self.semaphore:
                    record = await self._post(poster, stream, frame, seq)
                seq += 1
                self._progress(record, seq, bar)
        finally:
            with contextlib.suppress(Exception):
                await ahead  # a generator cannot be closed while another thread runs it
            footage.close()
        if self.speed is not None and seq > 1 and last_t > (first_t or 0.0):
            self.rates.append(self.speed * (seq - 1) / (last_t - (first_t or 0.0)))

    async def _pace(self, t: float) -> bool:
        """Wait until a frame `t` seconds into its stream is due; False when stopped meanwhile."""
        if self.speed is None:
            return True
        lag = self.loop.time() - (self.start + t / self.speed)
        if lag >= 0:
            self.report.max_lag_s = max(self.report.max_lag_s, lag)
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), -lag)
        return not self.stop.is_set()

    async def _post(self, poster: FramePoster, stream: Stream, frame: Frame, seq: int) -> FrameRecord:
        """POST one frame and keep its record; the answer's slots are scored, then forgotten."""
        sent = self.loop.time()
        answer = await poster.post(stream.camera, frame.data, frame.content_type)
        record = FrameRecord(
            camera=stream.camera,
            seq=seq,
            index=frame.index,
            status=answer.status,
            error=answer.failure,
            server_frame=None,
            sent_s=round(sent - self.start, 4),
            client_ms=round(answer.ms, 3),
            server_ms=None,
        )
        if answer.failure is None and answer.status != 200:
            record.error = str(answer.status)
            detail = _error_detail(answer.body)
            if detail:
                self.report.error_details.setdefault(record.error, detail)
        elif answer.failure is None:
            try:
                body = json.loads(answer.body)
            except ValueError:
                record.error = "client"
            else:
                _read_answer(record, body, self.truth.get((stream.source_camera, frame.index)))
        self.report.records.append(record)
        self.report.elapsed_s = max(self.report.elapsed_s, self.loop.time() - self.start)
        return record

    def _progress(self, record: FrameRecord, seq: int, bar: Any) -> None:
        bar.update(1)
        self.running["slots"] += record.slots
        self.running["hits"] += record.hits
        self.running["errors"] += record.error is not None
        if seq % 10 == 0:
            hit = self.running["hits"] / max(1, self.running["slots"])
            bar.set_postfix_str(f"hit {hit:.2f}, errors {self.running['errors']}", refresh=False)


def _read_answer(record: FrameRecord, body: dict[str, Any], truth: tuple[str | None, ...] | None) -> None:
    """Fill a 200 answer's tiers, labels, frame number, latency and (with truth) its score into `record`."""
    slots = body.get("slots") or []
    counts = Counter(slot_tier(s) for s in slots)
    record.tiers = tuple(counts[tier] for tier in Tier)
    ordered = sorted(slots, key=lambda s: s.get("slot", 0))
    record.labels = tuple(s.get("label") for s in ordered)
    record.states = tuple(str(s.get("state")) for s in ordered)
    record.server_frame = body.get("frame")
    record.server_ms = body.get("latency_ms")
    if truth is None:
        return
    for s in slots:
        i = s.get("slot")
        if isinstance(i, int) and 0 <= i < len(truth) and truth[i] is not None:
            record.scored += 1
            record.correct += s.get("label") == truth[i]


def _error_detail(raw: bytes) -> str | None:
    """The `detail` of a ShelfSense error answer, or the start of any other body (a proxy's page)."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    text = str(data.get("detail") or data.get("error") or "") if isinstance(data, dict) else ""
    text = " ".join((text or raw[:200].decode("utf-8", "replace")).split())
    return text[:160] or None


def _total_frames(streams: Sequence[Stream], fps: float) -> int | None:
    total = 0
    for s in streams:
        with open_footage(s.path, fps=fps, camera=s.select) as f:
            n = f.length
        if n is None:
            return None
        total += n
    return total
