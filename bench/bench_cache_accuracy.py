"""Slot accuracy with the cache off and on, over several footages: is the cache at least as accurate as inferring
every slot of every frame (issue 11)?

    for s in $(seq 1 16); do
      shelfsense footage synth --products ../shared/datasets/grocery-store/val --out /tmp/acc/s$s --seed $s
    done
    python bench/bench_cache_accuracy.py /tmp/acc/s*            # bundled config and model
    python bench/bench_cache_accuracy.py /tmp/acc/s* --config my.toml

Each footage runs through `shelfsense bench`'s own modes (no-cache, perceptual; the offline path, confirmations
settled after each frame) and is scored against its truth.jsonl; slots whose truth is null (empty, or an arm over
more than 30 % of the facing) are not counted. One footage holds few products, and the cache answers per product,
so a single footage says little: judge the total.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from shelfsense.bench.analysis import accuracy
from shelfsense.bench.runner import run_modes
from shelfsense.bench.setup import resolve_setup
from shelfsense.config import load_config


async def measure(footage: Path, config_path: Path | None) -> tuple[int, int, int, int]:
    config = load_config(config_path) if config_path else None
    setup = resolve_setup(footage, config=config, config_given=config_path is not None)
    if setup.truth is None:
        raise SystemExit(f"{footage}: no truth.jsonl beside it")
    runs = await run_modes(setup, ["no-cache", "perceptual"], progress=False)
    off, on = accuracy(runs["no-cache"], setup.truth), accuracy(runs["perceptual"], setup.truth)
    cached = runs["perceptual"]
    return off["correct"], on["correct"], off["scored"], cached.inferences + cached.confirmations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("footage", nargs="+", type=Path)
    ap.add_argument("--config", type=Path, help="config file (default: the bundled one)")
    args = ap.parse_args()
    print("| footage | product slots | cache off | cache on | on - off | inferences with the cache |")
    print("|---|---|---|---|---|---|")
    total = [0, 0, 0]
    for path in args.footage:
        off, on, n, inferences = asyncio.run(measure(path, args.config))
        total = [total[0] + off, total[1] + on, total[2] + n]
        row = f"| {path.name} | {n} | {off / n:.1%} | {on / n:.1%} | {(on - off) / n:+.1%} | {inferences} |"
        print(row, flush=True)
    off, on, n = total
    print(f"| **all** | {n} | **{off / n:.2%}** | **{on / n:.2%}** | {(on - off) / n:+.2%} | |")


if __name__ == "__main__":
    main()
