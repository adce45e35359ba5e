"""`shelfsense bench`: one footage through four result-reuse strategies, in process, side by side.

Modes (see docs/benchmarks.md, "Offline cache benchmark"):

* ``no-cache``: every slot inferred. Its labels are also the audit: with a deterministic interpreter they are
  exactly what a fresh inference on each slot's crop returns, so the other modes are compared against them
  instead of inferring every slot a second time.
* ``exact``: a generic response cache (Triton's, for one) keyed by a hash of the slot crop's exact pixels.
* ``motion``: re-infer a slot only when its downscaled grayscale crop moved more than a threshold (mean absolute
  difference) away from the crop of its last inference, as NVR motion detection does; else reuse that result.
* ``perceptual``: the Recognizer with the configured cache (a fresh temporary disk tier per run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shelfsense.bench.analysis import analyse
from shelfsense.bench.baselines import MOTION_THRESHOLD
from shelfsense.bench.runner import MODES, run_modes
from shelfsense.bench.setup import resolve_setup
from shelfsense.config import Config
from shelfsense.errors import ConfigError

__all__ = ["MODES", "run_benchmark"]


def run_benchmark(
    footage: str | Path,
    *,
    config: Config | None = None,
    config_given: bool = False,
    camera: str | None = None,
    truth: str | Path | None = None,
    modes: Sequence[str] = MODES,
    threads: int | None = None,
    motion_threshold: float = MOTION_THRESHOLD,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the modes (no-cache always, first: it is the baseline and the audit) and return the report."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ConfigError(f"Unknown bench mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    if motion_threshold < 0:
        raise ConfigError(f"--motion-threshold must be >= 0, got {motion_threshold}")
    setup = resolve_setup(footage, config=config, config_given=config_given, camera=camera, truth=truth)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        setup = setup.with_config(setup.config.replace(model={"threads": threads}))
    ordered = ["no-cache"] + [m for m in MODES if m in modes and m != "no-cache"]
    runs = asyncio.run(run_modes(setup, ordered, motion_threshold=motion_threshold, progress=progress))
    report = analyse(setup, runs)
    report["motion_threshold"] = motion_threshold
    return report
