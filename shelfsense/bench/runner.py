"""Running the bench's modes over one footage: the Recognizer (no cache, perceptual cache) and the baselines."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shelfsense.bench.baselines import MOTION_THRESHOLD, ExactBytes, MotionGate, Strategy
from shelfsense.bench.setup import Setup
from shelfsense.errors import BadImageError, ConfigError
from shelfsense.footage import Frame
from shelfsense.recognition.decode import decode_frame, slot_crops
from shelfsense.recognition.recognizer import Recognizer
from shelfsense.recognition.runtime import InferencePool
from shelfsense.shelf.tracker import ShelfTracker, SlotReading, TrackerRules
from shelfsense.types import Prediction, Tier

__all__ = ["MODES", "TITLES", "ModeRun", "run_modes"]

MODES = ("no-cache", "exact", "motion", "perceptual")
TITLES = {
    "no-cache": "no cache",
    "exact": "exact-bytes cache",
    "motion": "motion-gated",
    "perceptual": "perceptual cache (ShelfSense)",
}


@dataclass
class ModeRun:
    mode: str
    seconds: float = 0.0  # wall time of processing frames, nothing else
    inferences: int = 0  # interpreter invocations for slot results, counted by the pool
    confirmations: int = 0  # background re-inferences of cached answers (perceptual cache), also counted
    frames: list[int] = field(default_factory=list)  # Frame.index of each processed frame
    labels: list[tuple[str | None, ...]] = field(default_factory=list)
    sources: list[tuple[str, ...]] = field(default_factory=list)  # Tier.MISS or where a reused result came from
    skipped: int = 0  # frames that did not decode (skipped alike by every mode)
    frame_ms: list[float] = field(default_factory=list)  # wall time of each processed frame
    stage_ms: list[tuple[float, float, float]] = field(default_factory=list)  # decode, keys, lookups (Recognizer)
    # Shelf state (Recognizer modes): per frame the slot states and the debounced states; events (type, slot, index)
    states: list[tuple[str, ...]] = field(default_factory=list)
    debounced: list[tuple[str | None, ...]] = field(default_factory=list)
    shelf_events: list[tuple[str, int, int]] = field(default_factory=list)
    # Per Recognizer frame, for the hit-path ratio: its JPEG decoded alone, then recognize() alone (no settle), each
    # as wall ms and process CPU ms (CPU time is what other processes on a shared machine cannot stretch).
    hit_path: list[tuple[float, float, float, float]] = field(default_factory=list)

    def add(self, index: int, seconds: float, labels: tuple[str | None, ...], sources: tuple[str, ...]) -> None:
        """Count one processed frame."""
        self.seconds += seconds
        self.frame_ms.append(seconds * 1000.0)
        self.frames.append(index)
        self.labels.append(labels)
        self.sources.append(sources)


async def run_modes(
    setup: Setup, modes: Sequence[str], *, motion_threshold: float = MOTION_THRESHOLD, progress: bool = True
) -> dict[str, ModeRun]:
    runs: dict[str, ModeRun] = {}
    for mode in modes:
        if mode == "no-cache":
            runs[mode] = await _run_recognizer(mode, setup, progress, None)
        elif mode == "perceptual":
            with tempfile.TemporaryDirectory(prefix="shelfsense-bench-") as tmp:
                runs[mode] = await _run_recognizer(mode, setup, progress, Path(tmp) / "cache")
        elif mode == "exact":
            runs[mode] = await _run_strategy(mode, setup, ExactBytes(), progress)
        elif mode == "motion":
            gate = MotionGate(len(setup.boxes), motion_threshold)
            runs[mode] = await _run_strategy(mode, setup, gate, progress)
        else:
            raise ConfigError(f"Unknown bench mode {mode!r}: choose from {', '.join(MODES)}")
    return runs


def _frames(setup: Setup, mode: str, progress: bool) -> Iterator[Frame]:
    footage = setup.open()
    try:
        yield from tqdm(
            footage,
            total=footage.length,
            desc=TITLES[mode],
            unit="frame",
            file=sys.stderr,
            leave=False,
            disable=not progress or not sys.stderr.isatty(),
        )
    finally:
        footage.close()


async def _warm(pool: InferencePool, setup: Setup) -> int:
    """Load every worker's interpreter before the clock starts; returns the pool's count to subtract."""
    _, _, w, h = setup.boxes[0]
    blank = np.full((h, w, 3), 127, np.uint8)
    await asyncio.gather(*(pool.classify(blank) for _ in range(2 * pool.threads)))
    return pool.invokes


async def _run_recognizer(mode: str, setup: Setup, progress: bool, cache_dir: Path | None) -> ModeRun:
    config = setup.config
    if cache_dir is None:
        config = config.replace(cache={"enabled": False})
    else:
        config = config.replace(cache={"enabled": True, "disk_path": cache_dir})
    run = ModeRun(mode)
    recognizer = await Recognizer.create(config)
    shelf = config.shelf
    tracker = ShelfTracker(TrackerRules(confirm_frames=shelf.confirm_frames, confirm_s=shelf.confirm_s))
    try:
        start = await _warm(recognizer.pool, setup)
        for frame in _frames(setup, mode, progress):
            try:
                # The floor of the hit path: this frame's JPEG decoded alone, timed right beside the frame so
                # that both see the same machine load (docs/benchmarks.md, "Hit path").
                c0, t0 = time.process_time(), time.perf_counter()
                decode_frame(frame.data)
                c1, t1 = time.process_time(), time.perf_counter()
                result = await recognizer.recognize(setup.camera, frame.data)
                c2, t2 = time.process_time(), time.perf_counter()
                floor = ((t1 - t0) * 1000.0, (c1 - c0) * 1000.0, (t2 - t1) * 1000.0, (c2 - c1) * 1000.0)
                t0 = t1
                # A shelf camera posts a few frames a second, so in service a frame's background confirmations
                # end before the camera's next frame. Back to back they would race the next frames instead,
                # and which crops they average (hence agreement) would change from run to run.
                await recognizer.settle()
            except BadImageError:
                run.skipped += 1
                continue
            labels = tuple(s.label for s in result.slots)
            run.add(frame.index, time.perf_counter() - t0, labels, tuple(s.cache for s in result.slots))
            run.stage_ms.append((result.decode_ms, result.hash_ms, result.lookup_ms))
            readings = [SlotReading(s.state, s.label, s.score) for s in result.slots]
            changes = tracker.observe(setup.camera, readings, frame.index, frame.t)
            run.shelf_events += [(c["type"], c["slot"], c["frame"]) for c in changes]
            run.states.append(tuple(str(s.state) for s in result.slots))
            run.debounced.append(tuple(s.state and str(s.state) for s in tracker.cameras[setup.camera].slots))
            run.hit_path.append(floor)
        invokes = recognizer.pool.invokes - start
        run.inferences = sum(src == Tier.MISS for row in run.sources for src in row)
        run.confirmations = invokes - run.inferences
    finally:
        await recognizer.close()
    return run


async def _run_strategy(mode: str, setup: Setup, strategy: Strategy, progress: bool) -> ModeRun:
    camera = setup.config.cameras[setup.camera]
    run = ModeRun(mode)
    loop = asyncio.get_running_loop()
    pool = await loop.run_in_executor(None, InferencePool.from_config, setup.config.model)
    try:
        start = await _warm(pool, setup)
        for frame in _frames(setup, mode, progress):
            t0 = time.perf_counter()
            try:
                _, crops = slot_crops(decode_frame(frame.data), camera)
            except BadImageError:
                run.skipped += 1
                continue
            keys = strategy.keys(crops)
            predictions: list[Prediction | None] = [strategy.reuse(i, k) for i, k in enumerate(keys)]
            missed = [i for i, p in enumerate(predictions) if p is None]
            # A frame's misses run concurrently on the pool's threads, as the Recognizer runs them.
            answers = await asyncio.gather(*(pool.classify(crops[i]) for i in missed))
            for i, (prediction, _) in zip(missed, answers, strict=True):
                predictions[i] = prediction
                strategy.remember(i, keys[i], prediction)
            labels = tuple(p[0][0] if p else None for p in predictions)
            sources = tuple(Tier.MISS if i in missed else strategy.source for i in range(len(crops)))
            run.add(frame.index, time.perf_counter() - t0, labels, sources)
        run.inferences = pool.invokes - start
    finally:
        pool.close()
    return run
