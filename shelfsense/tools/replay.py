"""`shelfsense replay`: post recorded footage to a server as one or many cameras and measure what came back.

Each camera stream is one task with one request in flight, like a real camera, so a camera's frames
are answered in the order they were sent; `--concurrency` bounds the requests in flight across all
cameras. Footage is read lazily (one frame ahead per stream) and only a few numbers per frame are kept,
so a long recording replays in constant memory apart from those numbers.

Pace: `--speed 1.0` sends each frame at its recorded time (`Frame.t`), `2.0` twice as fast, `max` as fast
as answers come back. Hit rate counts slots served from a cache tier (memory or disk) in 200 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from shelfsense.config import check_camera_id
from shelfsense.footage import RecordingFootage, open_footage, read_truth
from shelfsense.tools.agent import check_server_url

HIT_TIERS = ("memory", "disk")
TIERS = ("memory", "disk", "miss", "coalesced")


@dataclass(frozen=True)
class Stream:
    camera: str  # the id frames are posted as
    source_camera: str  # the camera id in the footage and the truth file
    path: Path
    select: str | None  # camera filter/name handed to open_footage


@dataclass(slots=True)
class FrameRecord:
    """What one posted frame cost and returned; a few numbers, never the image."""

    camera: str
    seq: int  # 0-based position in this camera's stream
    index: int  # Frame.index in the footage
    status: int  # HTTP status, 0 when no answer came
    error: str | None  # None, the HTTP status as text, or connect / disconnected / timeout / client
    server_frame: int | None  # the server's per-camera frame counter from the answer
    sent_s: float  # seconds after the replay started
    client_ms: float
    server_ms: float | None
    tiers: tuple[int, int, int, int] = (0, 0, 0, 0)  # slots per memory, disk, miss, coalesced
    scored: int = 0  # slots with a non-null truth label
    correct: int = 0
    labels: tuple[str | None, ...] = ()  # the label served per slot, in slot order: what agreement is judged on

    @property
    def slots(self) -> int:
        return sum(self.tiers)

    @property
    def hits(self) -> int:
        return self.tiers[0] + self.tiers[1]


def pct(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    data = np.asarray(values, dtype=np.float64)
    out: dict[str, float | None] = {f"p{q}": round(float(np.percentile(data, q)), 3) for q in (50, 90, 99)}
    out["mean"] = round(float(data.mean()), 3)
    out["max"] = round(float(data.max()), 3)
    return out


@dataclass
class ReplayReport:
    url: str
    speed: float | None  # None = max
    concurrency: int
    warmup: int
    cameras: list[str]
    records: list[FrameRecord] = field(default_factory=list, repr=False)
    offered_fps: float | None = None
    elapsed_s: float = 0.0
    max_lag_s: float = 0.0  # how far behind schedule a paced send got
    truth_rows: int = 0
    interrupted: bool = False
    # The server's `detail` from the first refusal of each status: a count alone does not say what to fix.
    error_details: dict[str, str] = field(default_factory=dict)

    # ---- figures derived from the per-frame records

    @property
    def sent(self) -> int:
        return len(self.records)

    @property
    def ok(self) -> int:
        return sum(r.status == 200 for r in self.records)

    @property
    def errors(self) -> dict[str, int]:
        return dict(Counter(r.error for r in self.records if r.error is not None))

    def _hit_rate(self, warm_only: bool) -> float | None:
        rows = [r for r in self.records if r.status == 200 and (not warm_only or r.seq >= self.warmup)]
        slots = sum(r.slots for r in rows)
        return round(sum(r.hits for r in rows) / slots, 4) if slots else None

    @property
    def hit_rate(self) -> float | None:
        return self._hit_rate(False)

    @property
    def hit_rate_after_warmup(self) -> float | None:
        return self._hit_rate(True)

    @property
    def tiers(self) -> dict[str, int]:
        sums = [sum(r.tiers[i] for r in self.records) for i in range(4)]
        return dict(zip(TIERS, sums, strict=True))

    @property
    def accuracy(self) -> float | None:
        scored = sum(r.scored for r in self.records)
        return round(sum(r.correct for r in self.records) / scored, 4) if scored else None

    @property
    def achieved_fps(self) -> float | None:
        """Answered frames per second, summed over cameras: each camera's answered frame intervals over the
        time from its first send to its last answer (the same counting as the offered rate)."""
        total, seen = 0.0, False
        for cam in self.cameras:
            ok = [r for r in self.camera_records(cam) if r.status == 200]
            if len(ok) < 2:
                continue
            span = ok[-1].sent_s + ok[-1].client_ms / 1000.0 - ok[0].sent_s
            if span > 0:
                total, seen = total + (len(ok) - 1) / span, True
        return round(total, 3) if seen else None

    def camera_records(self, camera: str) -> list[FrameRecord]:
        return [r for r in self.records if r.camera == camera]

    def in_order(self, camera: str) -> bool:
        """The server numbered this camera's answered frames in the order the frames were sent."""
        numbers = [r.server_frame for r in self.camera_records(camera) if r.server_frame is not None]
        return all(a < b for a, b in zip(numbers, numbers[1:], strict=False))

    def as_dict(self) -> dict[str, Any]:
        scored = sum(r.scored for r in self.records)
        per_camera = {}
        for cam in self.cameras:
            mine = self.camera_records(cam)
            slots = sum(r.slots for r in mine if r.status == 200)
            per_camera[cam] = {
                "sent": len(mine),
                "ok": sum(r.status == 200 for r in mine),
                "hit_rate": round(sum(r.hits for r in mine if r.status == 200) / slots, 4) if slots else None,
                "in_order": self.in_order(cam),
            }
        return {
            "url": self.url,
            "speed": "max" if self.speed is None else self.speed,
            "concurrency": self.concurrency,
            "warmup_frames_per_camera": self.warmup,
            "cameras": len(self.cameras),
            "frames": {"sent": self.sent, "ok": self.ok, "failed": self.sent - self.ok},
            "errors": self.errors,
            "error_details": dict(self.error_details),
            "slots": {"total": sum(self.tiers.values()), **self.tiers},
            "hit_rate": self.hit_rate,
            "hit_rate_after_warmup": self.hit_rate_after_warmup,
            "client_latency_ms": pct([r.client_ms for r in self.records if r.status == 200]),
            "server_latency_ms": pct([r.server_ms for r in self.records if r.server_ms is not None]),
            "fps": {"offered": self.offered_fps, "achieved": self.achieved_fps},
            "elapsed_s": round(self.elapsed_s, 3),
            "max_lag_s": round(self.max_lag_s, 3),
            "accuracy": (
                None
                if not self.truth_rows
                else {
                    "value": self.accuracy,
                    "slots_scored": scored,
                    "correct": sum(r.correct for r in self.records),
                }
            ),
            "per_camera": per_camera,
            "interrupted": self.interrupted,
        }

    def table(self) -> str:
        d = self.as_dict()

        def lat(x: dict[str, float | None]) -> str:
            return "  ".join(f"{k} {'-' if x[k] is None else f'{x[k]:.1f}'}" for k in ("p50", "p90", "p99"))

        def rate(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        tiers = d["slots"]
        errors = (
            ", ".join(
                f"{k}: {v}" + (f" ({self.error_details[k]})" if k in self.error_details else "")
                for k, v in sorted(d["errors"].items())
            )
            or "none"
        )
        offered = "max" if d["fps"]["offered"] is None else f"{d['fps']['offered']:.2f}"
        achieved = "-" if d["fps"]["achieved"] is None else f"{d['fps']['achieved']:.2f}"
        rows = [
            ("cameras", f"{d['cameras']} ({', '.join(self.cameras[:4])}{', ...' if len(self.cameras) > 4 else ''})"),
            ("speed / concurrency", f"{d['speed']} / {d['concurrency']}"),
            ("frames sent / ok", f"{d['frames']['sent']} / {d['frames']['ok']}"),
            ("errors", errors),
            (
                "slots",
                f"{tiers['total']} (memory {tiers['memory']}, disk {tiers['disk']}, "
                f"miss {tiers['miss']}, coalesced {tiers['coalesced']})",
            ),
            ("hit rate", rate(d["hit_rate"])),
            (f"hit rate after warm-up ({self.warmup}/camera)", rate(d["hit_rate_after_warmup"])),
            ("client latency ms", lat(d["client_latency_ms"])),
            ("server latency ms", lat(d["server_latency_ms"])),
            ("fps achieved / offered", f"{achieved} / {offered}"),
            ("elapsed s", f"{d['elapsed_s']:.2f}" + (f" (max lag {d['max_lag_s']:.2f} s)" if self.speed else "")),
        ]
        if d["accuracy"] is not None:
            acc = d["accuracy"]
            rows.append(("accuracy", f"{rate(acc['value'])} ({acc['correct']}/{acc['slots_scored']} slots)"))
        if self.interrupted:
            rows.append(("interrupted", "yes: stopped before the footage ended"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


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
    truth_map: dict[tuple[str, int], tuple[str | None, ...]] = {}
    if truth is not None:
        truth_map = {(row.camera, row.frame): row.slots for row in read_truth(truth)}
    report = ReplayReport(
        url=url,
        speed=speed,
        concurrency=concurrency,
        warmup=warmup,
        cameras=[s.camera for s in streams],
        truth_rows=len(truth_map),
    )
    stop = stop or asyncio.Event()
    semaphore = asyncio.Semaphore(concurrency)
    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    loop = asyncio.get_running_loop()
    rates: list[float] = []
    running = Counter[str]()  # for the progress bar, without rescanning the records

    from tqdm import tqdm

    total = _total_frames(streams, fps)
    bar = tqdm(
        total=total, desc="replay", unit="frame", file=sys.stderr, disable=not progress or not sys.stderr.isatty()
    )
    start = loop.time()

    async def run(stream: Stream, session: aiohttp.ClientSession) -> None:
        footage_ = open_footage(stream.path, fps=fps, camera=stream.select)
        frames = iter(footage_)
        ahead = loop.run_in_executor(None, next, frames, None)  # reads overlap the request in flight
        first_t: float | None = None
        last_t = 0.0
        seq = 0
        try:
            while not stop.is_set():
                frame = await ahead
                if frame is None:
                    break
                ahead = loop.run_in_executor(None, next, frames, None)
                if first_t is None:
                    first_t = frame.t
                last_t = frame.t
                if speed is not None:
                    due = start + (frame.t - first_t) / speed
                    lag = loop.time() - due
                    if lag < 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), -lag)
                        if stop.is_set():
                            break
                    else:
                        report.max_lag_s = max(report.max_lag_s, lag)
                async with semaphore:
                    record, slots, detail = await _post(
                        session, f"{base}/v1/frames/{stream.camera}", frame, stream, seq, start, loop
                    )
                if record.error is not None and detail:
                    report.error_details.setdefault(record.error, detail)
                _score(record, truth_map.get((stream.source_camera, frame.index)), slots)
                report.records.append(record)
                report.elapsed_s = max(report.elapsed_s, loop.time() - start)
                seq += 1
                bar.update(1)
                running["slots"] += record.slots
                running["hits"] += record.hits
                running["errors"] += record.error is not None
                if seq % 10 == 0:
                    hit = running["hits"] / max(1, running["slots"])
                    bar.set_postfix_str(f"hit {hit:.2f}, errors {running['errors']}", refresh=False)
        finally:
            with contextlib.suppress(Exception):
                await ahead  # a generator cannot be closed while another thread runs it
            footage_.close()
        if speed is not None and seq > 1 and last_t > (first_t or 0.0):
            rates.append(speed * (seq - 1) / (last_t - (first_t or 0.0)))

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector) as session:
            await asyncio.gather(*(run(s, session) for s in streams))
    finally:
        bar.close()
    report.interrupted = stop.is_set()
    report.offered_fps = round(sum(rates), 3) if speed is not None and rates else None
    return report


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    frame: Any,
    stream: Stream,
    seq: int,
    start: float,
    loop: asyncio.AbstractEventLoop,
) -> tuple[FrameRecord, list[dict[str, Any]], str | None]:
    """POST one frame: its record, the answer's slots (scored by the caller, then forgotten) and, for a
    refusal, the server's detail."""
    sent = loop.time()
    t0 = time.perf_counter()
    status, error, body, detail = 0, None, None, None
    try:
        async with session.post(url, data=frame.data, headers={"Content-Type": frame.content_type}) as resp:
            status = resp.status
            raw = await resp.read()
        if status == 200:
            body = json.loads(raw)
        else:
            error = str(status)
            detail = _error_detail(raw)
    except aiohttp.ClientConnectorError:
        error = "connect"
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
        error = "disconnected"
    except TimeoutError:
        error = "timeout"
    except (aiohttp.ClientError, json.JSONDecodeError):
        error = "client"
    client_ms = round((time.perf_counter() - t0) * 1000.0, 3)
    record = FrameRecord(
        camera=stream.camera,
        seq=seq,
        index=frame.index,
        status=status if error is None or status else 0,
        error=error,
        server_frame=None,
        sent_s=round(sent - start, 4),
        client_ms=client_ms,
        server_ms=None,
    )
    slots: list[dict[str, Any]] = []
    if body is not None:
        slots = body.get("slots") or []
        counts = Counter(s.get("cache") for s in slots)
        record.tiers = (counts["memory"], counts["disk"], counts["miss"], counts["coalesced"])
        record.labels = tuple(s.get("label") for s in sorted(slots, key=lambda s: s.get("slot", 0)))
        record.server_frame = body.get("frame")
        record.server_ms = body.get("latency_ms")
    return record, slots, detail


def _error_detail(raw: bytes) -> str | None:
    """The `detail` of a ShelfSense error answer, or the start of any other body (a proxy's page)."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    text = str(data.get("detail") or data.get("error") or "") if isinstance(data, dict) else ""
    text = " ".join((text or raw[:200].decode("utf-8", "replace")).split())
    return text[:160] or None


def _score(record: FrameRecord, truth: tuple[str | None, ...] | None, slots: list[dict[str, Any]]) -> None:
    if truth is None or record.status != 200:
        return
    for s in slots:
        i = s.get("slot")
        if isinstance(i, int) and 0 <= i < len(truth) and truth[i] is not None:
            record.scored += 1
            record.correct += s.get("label") == truth[i]


def _total_frames(streams: Sequence[Stream], fps: float) -> int | None:
    total = 0
    for s in streams:
        with open_footage(s.path, fps=fps, camera=s.select) as f:
            n = f.length
        if n is None:
            return None
        total += n
    return total


def _speed(text: str) -> float | None:
    if text.lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--speed must be a positive number or 'max', got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"--speed must be a positive number or 'max', got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay",
        help="post recorded footage to a server as one or many cameras and report hit rate, latency, accuracy",
        description=(
            "Replay footage (recordings, folders of frames, video files) against a running server. "
            "Exit status 1 when any frame failed, 2 on bad arguments (such as a --url that is not http(s)://) "
            "or unreadable footage."
        ),
    )
    p.add_argument("footage", nargs="+", type=Path, help="recording folder, folder of frames or video file")
    p.add_argument("--url", required=True, help="server base URL (http:// or https://), e.g. http://127.0.0.1:8080")
    p.add_argument("--camera", help="camera id to post as (and to pick from a multi-camera recording)")
    p.add_argument("--cameras", type=int, default=1, help="fan each footage out as K cameras <camera>-0..K-1")
    p.add_argument("--speed", type=_speed, default=1.0, help="1.0 = recorded pace, 2.0 = twice as fast, max")
    p.add_argument("--concurrency", type=int, help="requests in flight across cameras (default: one per camera)")
    p.add_argument("--truth", type=Path, help="truth.jsonl: adds slot-label accuracy (null entries skipped)")
    p.add_argument("--warmup", type=int, default=1, help="frames per camera left out of the warm hit rate")
    p.add_argument("--token", default="", help="bearer token for the cameras")
    p.add_argument("--fps", type=float, default=2.0, help="frame rate of footage without timestamps")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--report", type=Path, help="write the summary as JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    async def main() -> ReplayReport:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Ctrl-C ends the replay early but still prints the figures of what was sent.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        try:
            return await replay(
                args.footage,
                args.url,
                camera=args.camera,
                cameras=args.cameras,
                speed=args.speed,
                concurrency=args.concurrency,
                truth=args.truth,
                warmup=args.warmup,
                token=args.token,
                fps=args.fps,
                timeout_s=args.timeout,
                progress=not args.quiet,
                stop=stop,
            )
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    try:
        report = asyncio.run(main())
    except (ValueError, OSError) as exc:
        print(f"shelfsense replay: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    if args.report:
        args.report.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0 if report.sent and report.ok == report.sent else 1
