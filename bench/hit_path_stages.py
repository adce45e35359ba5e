"""Where an all-hit frame's process CPU goes: `recognize()` over footage, each stage timed around its calls.

Reproduce (~15 s a run; run it several times, alternating with the code compared against)::

    PYTHONPATH=. .venv/bin/python bench/hit_path_stages.py /tmp/f

Runs the footage once through a Recognizer with the cache on (as `shelfsense bench` does, a background
confirmation settled after each frame) and prints, as one JSON line, the P50 over the frames whose slots were all
memory hits of: the whole `recognize()` call, the decode inside it, slot crops, keys (the key memo, of which the
keys recomputed), slot-state cues, memory lookups, slot states, and the rest; and `every_frame_cpu`, the process
CPU of the whole run a frame (every frame, with its inferences and background confirmations). Each stage is timed with
`time.process_time()` around its calls, which adds a few tenths of a ms to the whole frame. It also times code
from before this script (shelfsense at 29e4d4a), whose cues were `look_of` a slot.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import shelfsense.recognition.recognizer as recognizer_module
from shelfsense.bench.setup import resolve_setup
from shelfsense.types import Tier

STAGES = ("whole", "decode", "crops", "pictures", "keys", "recomputed keys", "cues", "lookups", "states")


def timed(owner: Any, name: str, stage: str, spent: dict[str, float]) -> None:
    """Replace owner.name by a wrapper adding its process CPU to spent[stage]."""
    inner: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[stage] = spent.get(stage, 0.0) + time.process_time() - t0

    setattr(owner, name, wrapper)


async def stages(footage: Path) -> dict[str, float]:
    setup = resolve_setup(footage)
    spent: dict[str, float] = {}
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="shelfsense-stages-") as tmp:
        config = setup.config.replace(cache={"enabled": True, "disk_path": Path(tmp) / "cache"})
        rec = await recognizer_module.Recognizer.create(config)
        try:  # since the fifth round the prepare step has its own module
            from shelfsense.recognition import prepare as prep_module
        except ImportError:
            prep_module = recognizer_module
        timed(prep_module, "decode_frame", "decode", spent)
        if hasattr(recognizer_module, "slot_crops"):  # before the fifth round, which crops only on demand
            timed(recognizer_module, "slot_crops", "crops", spent)
        if hasattr(prep_module, "slot_pictures"):
            timed(prep_module, "slot_pictures", "pictures", spent)
        if hasattr(rec.keys, "reused"):  # since the fifth round: the memo's test, then a key only where needed
            timed(rec.keys, "reused", "keys", spent)
            timed(rec.keys, "computed", "keys", spent)
        else:
            timed(rec.keys, "key_and_reference" if hasattr(rec.keys, "key_and_reference") else "key", "keys", spent)
        timed(rec.hasher, "key", "recomputed keys", spent)
        if hasattr(prep_module, "looks_of"):  # since the fourth hit-path round
            timed(prep_module, "looks_of", "cues", spent)
        elif hasattr(rec, "looks"):  # the third round's LookMaker
            timed(rec.looks, "looks", "cues", spent)
        else:  # the code before LookMaker
            timed(recognizer_module, "look_of", "cues", spent)
        assert rec.cache is not None
        timed(rec.cache, "lookup_memory", "lookups", spent)
        if rec.states is not None:
            timed(rec.states, "classify", "states", spent)
        try:
            start, count = time.process_time(), 0
            for frame in setup.open():
                spent.clear()
                t0 = time.process_time()
                result = await rec.recognize(setup.camera, frame.data)
                whole = time.process_time() - t0
                await rec.settle()
                count += 1
                if all(s.cache == Tier.MEMORY for s in result.slots):
                    rows.append({**spent, "whole": whole})
            # Every frame, misses and their inferences and the background confirmations included: what the
            # footage costs the process as a whole, beside the all-hit frames' parts.
            every_frame = (time.process_time() - start) / max(count, 1)
        finally:
            await rec.close()
    out = {stage: float(np.median([r.get(stage, 0.0) for r in rows])) * 1000.0 for stage in STAGES}
    out["rest"] = out["whole"] - sum(out[s] for s in STAGES[1:] if s != "recomputed keys")
    out["frames"] = len(rows)
    out["every_frame_cpu"] = every_frame * 1000.0
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__)
        return 2
    print(json.dumps({k: round(v, 3) for k, v in asyncio.run(stages(Path(args[0]))).items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
