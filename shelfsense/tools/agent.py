"""`shelfsense camera`: the agent that runs on a smart-shelf camera and posts its frames to ShelfSense.

Two tasks share one latest-frame slot. The grabber takes a frame every 1/fps seconds and overwrites the
slot; the sender takes whatever is newest and POSTs it. A slow or absent server therefore costs stale
frames (counted as dropped), never memory: at most one frame waits, one is in flight. Failed posts are
retried with capped exponential backoff plus jitter; while backing off, a newer frame replaces the one
held, because a shelf camera's old picture is worth nothing once a newer one exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from shelfsense.client import CONNECTION_FAILURES, FramePoster, slot_tier
from shelfsense.config import check_camera_id
from shelfsense.errors import SourceError
from shelfsense.tools.capture import FrameSource
from shelfsense.tools.pacing import ServerPace
from shelfsense.types import percentiles

__all__ = ["AgentStats", "CameraAgent", "Grabbed", "LatestFrame", "run_agent"]

log = logging.getLogger(__name__)

# HTTP statuses that mean "try again later"; any other 4xx will not get better by resending the frame.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class AgentStats:
    """Counters of one agent run.

    grabbed: frames taken from the source. sent: frames POSTed whose outcome is known, so sent = ok + failed
    at every moment (a frame still in flight or being retried is counted when it settles). ok: frames
    answered 200. failed: sent frames that never got a 200 (not retryable, retries exhausted, a newer frame
    took over during the backoff, or the agent stopped first). dropped: stale frames replaced by a newer one
    before being sent, so grabbed = sent + dropped + (at most 2 after a stop: one waiting, one held unsent),
    exactly when the source ended or max_frames was reached.
    attempts: POSTs made; retries: POSTs made after a failed one. errors: failed POSTs by kind (connect,
    disconnected, timeout, http_<status>). reconnects: answers right after connection-level failures.
    max_waiting: most frames ever waiting in the slot (1 by design).
    """

    grabbed: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    dropped: int = 0
    attempts: int = 0
    retries: int = 0
    reconnects: int = 0
    source_errors: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    max_waiting: int = 0
    max_attempts_per_frame: int = 0
    backoff_s: float = 0.0  # the last backoff delay chosen
    latency_ms: list[float] = field(default_factory=list, repr=False)  # since the last summary only

    def line(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.grabbed} grabbed, {self.sent} sent, {self.ok} ok, {self.failed} failed, {self.dropped} dropped, "
            f"{self.retries} retries, {self.reconnects} reconnects; errors: {errors}"
        )


@dataclass(frozen=True, slots=True)
class Grabbed:
    number: int  # 0-based grab counter
    data: bytes
    content_type: str


class LatestFrame:
    """A slot of size one: put() overwrites (counting the frame it replaces), take() waits for the newest."""

    def __init__(self, stats: AgentStats) -> None:
        self._frame: Grabbed | None = None
        self._ready = asyncio.Event()
        self._stats = stats

    def put(self, frame: Grabbed) -> None:
        if self._frame is not None:
            self._stats.dropped += 1
        self._frame = frame
        self._ready.set()
        self._stats.max_waiting = max(self._stats.max_waiting, len(self))

    def take_nowait(self) -> Grabbed | None:
        frame, self._frame = self._frame, None
        self._ready.clear()
        return frame

    async def take(self) -> Grabbed:
        await self._ready.wait()
        frame = self.take_nowait()
        assert frame is not None
        return frame

    def __len__(self) -> int:
        return 0 if self._frame is None else 1


class CameraAgent:
    def __init__(
        self,
        source: FrameSource,
        url: str,
        camera: str,
        *,
        token: str = "",
        max_retries: int = 3,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 10.0,
        timeout_s: float = 10.0,
        summary_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        check_camera_id(camera)
        if max_retries < 0 or backoff_base_s <= 0 or backoff_cap_s < backoff_base_s:
            raise ValueError("need max_retries >= 0 and 0 < backoff_base_s <= backoff_cap_s")
        self.source = source
        self.poster = FramePoster(url, token=token, timeout_s=timeout_s)  # checks the URL
        self.camera = camera
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.summary_s = summary_s
        self.rng = rng or random.Random()
        self.stats = AgentStats()
        self.slot = LatestFrame(self.stats)
        self._grabber_done = asyncio.Event()
        self._warned: set[str] = set()
        self.pace = ServerPace(camera)  # a server running hot asks for fewer frames: tools/pacing.py

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        """Exponential in consecutive failures, capped, with jitter so restarted servers are not stampeded."""
        delay = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** max(0, failures - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_cap_s))
        return delay * self.rng.uniform(0.5, 1.0)

    async def run(self, stop: asyncio.Event, max_frames: int | None = None) -> AgentStats:
        """Run until `stop` is set, or the source ended or gave `max_frames` frames and each was sent or dropped."""
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"--max-frames must be at least 1, got {max_frames}")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"shelfsense-grab-{self.camera}")
        grabber = asyncio.create_task(self._grab(stop, executor, max_frames), name="shelfsense-grabber")
        summary = asyncio.create_task(self._summaries(stop), name="shelfsense-agent-summary")
        try:
            async with self.poster:
                await self._send(stop)
        finally:
            stop.set()
            for task in (grabber, summary):
                task.cancel()
            for task in (grabber, summary):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # A capture read in progress finishes on its own (bounded by the source's timeouts).
            executor.shutdown(wait=False, cancel_futures=True)
            self.source.close()
        log.info("camera %s stopped: %s", self.camera, self.stats.line())
        return self.stats

    async def _grab(self, stop: asyncio.Event, executor: ThreadPoolExecutor, max_frames: int | None) -> None:
        # The frame count ends the run from here, not from the sender: during an outage the sender replaces
        # its held frame with each newer one and would never finish a frame it could count.
        loop = asyncio.get_running_loop()
        failures = 0
        number = 0
        try:
            while not stop.is_set():
                frames = self.source.frames()
                start = loop.time()
                try:
                    while not stop.is_set():
                        item = await loop.run_in_executor(executor, next, frames, None)
                        if item is None:
                            return  # a file or footage without --loop has ended
                        t, data, ctype = item
                        # Files and footage would be read as fast as the disk allows: pace them like a camera.
                        if not self.source.live and await _wait(stop, start + t - loop.time()):
                            return
                        self.stats.grabbed += 1
                        self.slot.put(Grabbed(number, data, ctype))
                        number += 1
                        failures = 0
                        if max_frames is not None and number >= max_frames:
                            return
                except SourceError as exc:
                    # A camera unplugged or a stream dropped: reopen it, backing off like the sender does.
                    self.stats.source_errors += 1
                    failures += 1
                    delay = self.backoff(failures)
                    log.warning("camera %s: %s; reopening in %.1f s", self.camera, exc, delay)
                    if await _wait(stop, delay):
                        return
                finally:
                    await loop.run_in_executor(executor, frames.close)
        finally:
            self._grabber_done.set()

    async def _next_frame(self, stop: asyncio.Event) -> Grabbed | None:
        """The newest frame, no sooner than the server asked; None when stopped or the source ended with none left."""
        if await self.pace.wait(stop):
            return None
        if len(self.slot):
            return self.slot.take_nowait()
        waits = [asyncio.ensure_future(w) for w in (self.slot.take(), stop.wait(), self._grabber_done.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        if waits[0].done() and not waits[0].cancelled() and waits[0].exception() is None:
            return waits[0].result()
        if stop.is_set():
            return None
        return self.slot.take_nowait()  # the grabber ended: send what it left, if anything

    def _settle(self, ok: bool) -> None:
        # sent moves with ok/failed, so no window of the summary shows more answers than frames sent.
        self.stats.sent += 1
        if ok:
            self.stats.ok += 1
        else:
            self.stats.failed += 1

    async def _send(self, stop: asyncio.Event) -> None:
        failures = 0  # consecutive failed POSTs, whatever frame they carried
        link_down = False
        retry_after: float | None = None
        while True:
            frame = await self._next_frame(stop)
            if frame is None:
                return
            attempts = 0
            while True:
                if failures:
                    delay = self.backoff(failures, retry_after)
                    self.stats.backoff_s = delay
                    if await _wait(stop, delay):
                        if attempts:
                            self._settle(ok=False)
                        return
                    newer = self.slot.take_nowait()
                    if newer is not None:
                        # The held frame went stale while we waited: given up if it was tried, else dropped.
                        if attempts:
                            self._settle(ok=False)
                        else:
                            self.stats.dropped += 1
                        frame, attempts = newer, 0
                    self.stats.retries += 1
                attempts += 1
                self.stats.attempts += 1
                self.stats.max_attempts_per_frame = max(self.stats.max_attempts_per_frame, attempts)
                kind, retry_after = await self._post(frame)
                if link_down and (kind is None or kind.startswith("http_")):
                    # Any answer means the server is back, even one refusing this frame.
                    self.stats.reconnects += 1
                    link_down = False
                    log.info("camera %s: server reachable again", self.camera)
                if kind is None:
                    self._settle(ok=True)
                    failures = 0
                    break
                self.stats.errors[kind] += 1
                status = int(kind[5:]) if kind.startswith("http_") else None
                if status is not None and status not in RETRY_STATUSES:
                    self._settle(ok=False)
                    failures = 0  # the server is up and answered: the frame or the configuration is the problem
                    break
                failures += 1
                # After a restart or a network blip, the next answer counts as a reconnect.
                link_down = link_down or kind in CONNECTION_FAILURES
                if attempts > self.max_retries:
                    self._settle(ok=False)
                    break

    async def _post(self, frame: Grabbed) -> tuple[str | None, float | None]:
        """POST one frame: (None, None) on 200, else (error kind, Retry-After seconds or None)."""
        answer = await self.poster.post(self.camera, frame.data, frame.content_type)
        if answer.failure is not None:
            log.debug("camera %s frame %d: %s (%s)", self.camera, frame.number, answer.failure, answer.exception)
            return answer.failure, None
        if answer.status == 200:
            self.pace.obey(answer.next_frame_after_ms)
            self.stats.latency_ms.append(answer.ms)
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "camera %s frame %d: 200 in %.1f ms %s", self.camera, frame.number, answer.ms, _brief(answer.body)
                )
            return None, None
        kind = f"http_{answer.status}"
        detail = answer.body[:200].decode("utf-8", "replace")
        if answer.status in RETRY_STATUSES:
            log.debug(
                "camera %s frame %d: %d in %.1f ms: %s", self.camera, frame.number, answer.status, answer.ms, detail
            )
        elif kind not in self._warned:
            # A wrong token or an unknown camera will not fix itself: say it loudly, once.
            self._warned.add(kind)
            log.error("camera %s: server refused a frame with %d: %s", self.camera, answer.status, detail)
        return kind, answer.retry_after

    async def _summaries(self, stop: asyncio.Event) -> None:
        last = AgentStats()
        while not await _wait(stop, self.summary_s):
            s = self.stats
            median = percentiles(s.latency_ms, (50,))["p50"]
            s.latency_ms = []
            p50 = "-" if median is None else f"{median:.0f} ms"
            log.info(
                "camera %s, last %.0f s: %d sent, %d ok, %d failed, %d dropped, %d retries, p50 %s | total: %s",
                self.camera,
                self.summary_s,
                s.sent - last.sent,
                s.ok - last.ok,
                s.failed - last.failed,
                s.dropped - last.dropped,
                s.retries - last.retries,
                p50,
                s.line(),
            )
            last = AgentStats(sent=s.sent, ok=s.ok, failed=s.failed, dropped=s.dropped, retries=s.retries)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True as soon as `stop` is set."""
    if stop.is_set():
        return True
    if seconds <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


def _brief(body: bytes) -> str:
    try:
        data = json.loads(body)
        slots = data.get("slots", [])
        hits = sum(tier is not None and tier.is_hit for tier in map(slot_tier, slots))
        return f"(server frame {data.get('frame')}, {len(slots)} slots, {hits} cached, {data.get('latency_ms')} ms)"
    except (ValueError, AttributeError):
        return ""


async def run_agent(
    source: str | Path | FrameSource,
    url: str,
    camera: str,
    *,
    fps: float = 2.0,
    token: str = "",
    jpeg_quality: int = 85,
    loop: bool = False,
    stop: asyncio.Event | None = None,
    max_frames: int | None = None,
    max_retries: int = 3,
    backoff_base_s: float = 0.5,
    backoff_cap_s: float = 10.0,
    timeout_s: float = 10.0,
    summary_s: float = 10.0,
    agent_out: list[CameraAgent] | None = None,
) -> AgentStats:
    """Run a camera agent until `stop` is set, or the source ends or has given `max_frames` frames.

    Either way the run ends once every frame grabbed was sent (answered, or given up after its retries) or
    dropped as stale, so with the server down it still ends, having delivered nothing (stats.ok == 0).

    `agent_out`, when given, receives the CameraAgent so a caller can watch its slot while it runs.
    """
    if not isinstance(source, FrameSource):
        source = FrameSource(source, fps=fps, jpeg_quality=jpeg_quality, loop=loop)
    agent = CameraAgent(
        source,
        url,
        camera,
        token=token,
        max_retries=max_retries,
        backoff_base_s=backoff_base_s,
        backoff_cap_s=backoff_cap_s,
        timeout_s=timeout_s,
        summary_s=summary_s,
    )
    if agent_out is not None:
        agent_out.append(agent)
    return await agent.run(stop or asyncio.Event(), max_frames)
