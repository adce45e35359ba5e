"""Bytes the disk tier writes per stored entry and per rewrite (a confirmation): the SD-card wear figure of
docs/raspberry-pi.md.

    .venv/bin/python bench/disk_wear.py [--entries 5000] [--dir /var/tmp]

Stores entries through ShelfSense's own DiskTier (diskcache, SQLite WAL) in a scratch folder on the disk to
measure, and reads the process's write counters in /proc/self/io: `wchar` (bytes handed to write()) and
`write_bytes` (bytes this process sent towards the block device). Linux only.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path

from shelfsense.recognition.answer import Answer
from shelfsense.recognition.disk import DiskTier
from shelfsense.recognition.hashing import PerceptualKey

WARMUP = 200


def counters() -> tuple[int, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"]), int(fields["write_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--dir", default="/var/tmp", help="scratch folder on the disk to measure")
    args = parser.parse_args()
    rng = random.Random(1)
    labels = [f"product-{i}" for i in range(1000)]

    def prediction() -> list[tuple[str, float]]:
        return [(rng.choice(labels), round(rng.random(), 4)) for _ in range(3)]

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "cache"
        # the namespace ShelfSense uses: 16 hex digits of the model's SHA-256, then the hash algorithm
        tier = DiskTier(path, 256 << 20, "0123456789abcdef-phash", 8, lambda a, b: True)
        tier.open()
        keys = [PerceptualKey(rng.getrandbits(64), rng.randbytes(12)) for _ in range(args.entries + WARMUP)]
        for key in keys[:WARMUP]:  # tables and indexes exist, as in a running service
            tier.put(key, Answer(prediction(), 1))
        for label, inferences in (("new entry", 1), ("rewrite (confirmation)", 2)):
            os.sync()
            before = counters()
            for key in keys[WARMUP:]:
                tier.put(key, Answer(prediction(), inferences))
            tier.close()  # checkpoints the write-ahead log into the database
            os.sync()
            after = counters()
            n = args.entries
            print(
                f"{label}: {(after[0] - before[0]) / n:,.0f} B handed to write(), "
                f"{(after[1] - before[1]) / n:,.0f} B towards the disk, per entry ({n:,} entries)"
            )
            tier.open()
        stored = sum(p.stat().st_size for p in path.iterdir())
        print(f"database on disk: {stored / len(keys):,.0f} B per entry")
        tier.close()


if __name__ == "__main__":
    main()
