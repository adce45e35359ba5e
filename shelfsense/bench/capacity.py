"""`shelfsense bench capacity`: how many cameras at a given frame rate one box serves, per model.

A real `shelfsense serve` process on loopback (a fresh disk cache, the footage camera's slots configured for
every camera), then N cameras posting the footage at F frames/s each, one request in flight per camera as a
camera does, for a fixed time per step. N is stepped up (1, 2, 4, ... by default) until a step does not hold:
client P99 over the target, any frame refused (503: an admission budget full) or failed, or the achieved rate
under 95 % of the offered one; then the gap to the last N that held is halved until it is within an eighth.
The largest N that held is the box's capacity for that model and frame rate; the hit and miss shares of the
slots say how much of that the cache carried, and each refusal is counted by the budget that made it.

Before the steps, one camera posts the first half of the footage once: the cache a box has after its first
minutes. Camera i then replays the whole footage from frame i * 37 on (so that the cameras are not in step);
the second half's takes, restocks and arms are new to the cache, and whichever camera meets one first pays
the inferences (the misses), the others finding it cached: every camera shows the same shelf, as cameras
watching the same products do. Client and server share this machine's cores: the capacity measured is of
server and load generator together, a lower bound for the server alone.

    shelfsense footage synth --products ../shared/datasets/grocery-store/val --out /tmp/f --frames 240 \\
        --slots 2x4 --seed 1
    shelfsense bench capacity /tmp/f --fps 2 --p99-ms 250 \\
        --model models/grocery_int8.tflite \\
        --model ../shared/models/mobilenet_v2_1.0_224_quant.tflite:../shared/models/imagenet_labels.txt
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shelfsense.bench.loopback import ServerProcess
from shelfsense.bench.setup import Setup, resolve_setup
from shelfsense.client import FramePoster, slot_tier
from shelfsense.config import CameraConfig, Config
from shelfsense.errors import ConfigError
from shelfsense.types import Tier, percentiles

__all__ = ["CameraStep", "ModelCapacity", "ModelChoice", "format_capacity", "run_capacity"]

DEFAULT_STEPS = (1, 2, 4, 8, 16, 32, 64, 128)
HELD_RATE = 0.95  # a step holds only if it achieved this share of the offered frame rate
WARM_UP_LIMIT_S = 60.0  # the warm-up pass stops here whatever is left of the footage
CAMERA_STAGGER = 37  # frames between the starting points of consecutive cameras


@dataclass(frozen=True)
class ModelChoice:
    path: Path
    labels: Path | None = None

    @classmethod
    def parse(cls, text: str) -> ModelChoice:
        """'model.tflite' or 'model.tflite:labels.txt'."""
        path, _, labels = text.partition(":")
        return cls(Path(path).resolve(), Path(labels).resolve() if labels else None)


@dataclass
class CameraStep:
    cameras: int
    fps: float  # per camera
    seconds: float
    sent: int = 0
    ok: int = 0
    refused: int = 0  # 503 answers
    refused_by: Counter = field(default_factory=Counter)  # which admission budget said no (from the 503's message)
    errors: int = 0  # other statuses and requests that got no answer
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    tiers: Counter = field(default_factory=Counter)

    @property
    def offered_fps(self) -> float:
        return self.cameras * self.fps

    @property
    def achieved_fps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def p(self, which: str, q: int) -> float | None:
        return percentiles(self.client_ms if which == "client" else self.server_ms, (q,))[f"p{q}"]

    def share(self, hit: bool) -> float | None:
        total = sum(self.tiers.values())
        if not total:
            return None
        return sum(n for tier, n in self.tiers.items() if Tier(tier).is_hit == hit) / total

    def holds(self, p99_ms: float) -> bool:
        p99 = self.p("client", 99)
        return (
            not self.refused
            and not self.errors
            and p99 is not None
            and p99 <= p99_ms
            and self.achieved_fps >= HELD_RATE * self.offered_fps
        )

    def as_dict(self, p99_ms: float) -> dict[str, Any]:
        return {
            "cameras": self.cameras,
            "fps_per_camera": self.fps,
            "offered_fps": self.offered_fps,
            "achieved_fps": round(self.achieved_fps, 2),
            "sent": self.sent,
            "ok": self.ok,
            "refused": self.refused,
            "refused_by": dict(self.refused_by),
            "errors": self.errors,
            "client_ms": percentiles(self.client_ms),
            "server_ms": percentiles(self.server_ms),
            "slots": dict(self.tiers),
            "hit_share": self.share(True),
            "miss_share": self.share(False),
            "holds": self.holds(p99_ms),
        }


@dataclass
class ModelCapacity:
    model: ModelChoice
    steps: list[CameraStep]
    p99_ms: float
    warm_up_frames: int = 0
    stopped_by_budget: bool = False

    @property
    def held(self) -> CameraStep | None:
        """The largest camera count that held, below every count that did not (the steps narrow in on it)."""
        failed = min((s.cameras for s in self.steps if not s.holds(self.p99_ms)), default=None)
        held = [s for s in self.steps if s.holds(self.p99_ms) and (failed is None or s.cameras < failed)]
        return max(held, key=lambda s: s.cameras, default=None)

    def as_dict(self) -> dict[str, Any]:
        held = self.held
        return {
            "model": str(self.model.path),
            "labels": str(self.model.labels) if self.model.labels else None,
            "p99_target_ms": self.p99_ms,
            "warm_up_frames": self.warm_up_frames,
            "largest_cameras_held": held.cameras if held else 0,
            "stopped_by_budget": self.stopped_by_budget,
            "steps": [s.as_dict(self.p99_ms) for s in self.steps],
        }


def run_capacity(
    footage: str | Path,
    models: list[ModelChoice],
    *,
    config: Config | None = None,
    config_given: bool = False,
    camera: str | None = None,
    fps: float = 2.0,
    p99_ms: float = 250.0,
    steps: tuple[int, ...] = DEFAULT_STEPS,
    step_seconds: float = 10.0,
    budget_s: float = 300.0,
    warm_up: bool = True,
) -> list[ModelCapacity]:
    """Step the camera count up per model until a step does not hold or the time budget (per model) is spent."""
    if fps <= 0 or p99_ms <= 0 or step_seconds <= 0 or budget_s <= 0:
        raise ConfigError("--fps, --p99-ms, --step-seconds and --budget-s must be > 0")
    if not steps or any(n < 1 for n in steps) or list(steps) != sorted(set(steps)):
        raise ConfigError(f"--cameras must be increasing counts >= 1, got {' '.join(map(str, steps))}")
    setup = resolve_setup(footage, config=config, config_given=config_given, camera=camera)
    frames = _frames(setup)
    slots = setup.config.cameras[setup.camera]
    chosen = models or [ModelChoice(setup.config.model.path.resolve(), setup.config.model.labels)]
    return [
        asyncio.run(_one_model(m, setup.config, slots, frames, fps, p99_ms, steps, step_seconds, budget_s, warm_up))
        for m in chosen
    ]


def _frames(setup: Setup) -> list[tuple[bytes, str]]:
    footage = setup.open()
    try:
        frames = [(f.data, "image/png" if f.data[:4] == b"\x89PNG" else "image/jpeg") for f in footage]
    finally:
        footage.close()
    if not frames:
        raise ConfigError(f"No frames in {setup.footage}")
    return frames


async def _one_model(
    model: ModelChoice,
    config: Config,
    slots: CameraConfig,
    frames: list[tuple[bytes, str]],
    fps: float,
    p99_ms: float,
    steps: tuple[int, ...],
    step_seconds: float,
    budget_s: float,
    warm_up: bool,
) -> ModelCapacity:
    result = ModelCapacity(model, [], p99_ms)
    deadline = time.monotonic() + budget_s
    cameras = [f"cam-{i}" for i in range(steps[-1])]
    async with ServerProcess(config, model.path, model.labels, cameras, slots) as server:
        if warm_up:  # one camera, the first half once: the second half stays new (see the module doc)
            warm = frames[: max(1, len(frames) // 2)]
            result.warm_up_frames = await _warm_up(server.url, warm, min(WARM_UP_LIMIT_S, budget_s / 4))
        for n in _counts(steps, result, p99_ms):
            if time.monotonic() + step_seconds > deadline:
                result.stopped_by_budget = True
                break
            result.steps.append(await _step(server.url, frames, n, fps, step_seconds))
    return result


def _counts(steps: tuple[int, ...], result: ModelCapacity, p99_ms: float) -> Iterator[int]:
    """The given counts until one fails, then halving the gap to the last count that held (to ~1/8 of it).

    Doubling alone leaves a factor of two between "holds" and "does not"; a few more steps narrow it. The
    caller appends each step to `result` before asking for the next count.
    """
    held = 0
    for n in steps:
        yield n
        if not result.steps[-1].holds(p99_ms):
            failed = n
            break
        held = n
    else:
        return
    while failed - held > max(1, held // 8):
        n = (held + failed) // 2
        yield n
        if result.steps[-1].holds(p99_ms):
            held = n
        else:
            failed = n


async def _warm_up(url: str, frames: list[tuple[bytes, str]], limit_s: float) -> int:
    stop = time.monotonic() + limit_s
    posted = 0
    async with FramePoster(url, timeout_s=60.0) as poster:
        for data, content_type in frames:
            if time.monotonic() > stop:
                break
            await poster.post("cam-0", data, content_type)
            posted += 1
    return posted


async def _step(url: str, frames: list[tuple[bytes, str]], cameras: int, fps: float, seconds: float) -> CameraStep:
    step = CameraStep(cameras, fps, seconds)
    period = 1.0 / fps
    start = time.monotonic()
    deadline = start + seconds
    async with FramePoster(url, timeout_s=max(30.0, 4 * seconds), limit=cameras + 4) as poster:

        async def camera(i: int) -> None:
            next_at = start + (i / cameras) * period  # spread over one period, not all at once
            n = i * CAMERA_STAGGER
            while True:
                now = time.monotonic()
                if next_at >= deadline:
                    return
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                # A late answer delays the next frame (one in flight), never a burst to catch up.
                next_at = max(next_at + period, time.monotonic())
                data, content_type = frames[n % len(frames)]
                n += 1
                answer = await poster.post(f"cam-{i}", data, content_type)
                step.sent += 1
                _count(step, answer.status, answer.body, answer.ms)

        await asyncio.gather(*(camera(i) for i in range(cameras)))
    step.seconds = max(time.monotonic() - start, seconds)
    return step


def _count(step: CameraStep, status: int, body: bytes | None, ms: float) -> None:
    if status == 503:
        step.refused += 1
        step.refused_by[_refusal(body)] += 1
        return
    if status != 200 or not body:
        step.errors += 1
        return
    answer = json.loads(body)
    step.ok += 1
    step.client_ms.append(ms)
    step.server_ms.append(float(answer["latency_ms"]))
    for slot in answer.get("slots", []):
        tier = slot_tier(slot)
        if tier is not None:
            step.tiers[str(tier)] += 1


def _refusal(body: bytes | None) -> str:
    """Which budget a 503 names (service/admission.py words its messages): frames, inference queue or other."""
    text = (body or b"").decode("utf-8", "replace")
    if "inference queue" in text:
        return "inference queue"
    if "being processed" in text:
        return "frames"
    return "other"


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def format_capacity(results: list[ModelCapacity]) -> str:
    lines = [
        f"loopback, {os.cpu_count()} cores shared by the server and the load generator",
        "",
        "| model | cameras x fps | offered / achieved fps | ok / sent | refused | client P50 / P99 ms "
        "| server P50 / P99 ms | hit / miss share | holds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for s in r.steps:
            lines.append(
                f"| {r.model.path.name} | {s.cameras} x {s.fps:g} | {s.offered_fps:g} / {s.achieved_fps:.1f} "
                f"| {s.ok} / {s.sent} | {s.refused} | {_fmt(s.p('client', 50))} / {_fmt(s.p('client', 99))} "
                f"| {_fmt(s.p('server', 50))} / {_fmt(s.p('server', 99))} "
                f"| {_fmt(_pct(s.share(True)))} % / {_fmt(_pct(s.share(False)))} % "
                f"| {'yes' if s.holds(r.p99_ms) else 'no'} |"
            )
    lines.append("")
    for r in results:
        held = r.held
        text = f"{r.model.path.name}: "
        if held is None:
            text += f"no step held (client P99 <= {r.p99_ms:g} ms, nothing refused)"
        else:
            text += (
                f"largest camera count that holds: {held.cameras} at {held.fps:g} fps "
                f"(client P99 {_fmt(held.p('client', 99))} ms <= {r.p99_ms:g} ms, nothing refused; "
                f"hit share {_fmt(_pct(held.share(True)))} %, miss share {_fmt(_pct(held.share(False)))} %)"
            )
        if r.stopped_by_budget:
            text += "; stopped by the time budget before a step failed: the capacity is at least this"
        elif held is not None and all(step.holds(r.p99_ms) for step in r.steps):
            text += "; every step held: the capacity is at least this"
        failed = [s for s in r.steps if not s.holds(r.p99_ms)]
        if failed:
            first = min(failed, key=lambda s: s.cameras)
            why = ", ".join(f"{n} by the {k} budget" for k, n in sorted(first.refused_by.items()))
            text += f"; {first.cameras} did not (client P99 {_fmt(first.p('client', 99))} ms, {first.refused} refused"
            text += f": {why})" if why else ")"
        lines.append(text)
    return "\n".join(lines)


def _pct(share: float | None) -> float | None:
    return None if share is None else 100.0 * share
