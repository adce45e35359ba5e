"""Benchmark the Hamming index against a numpy linear scan, and the per-crop cost of the perceptual key.

Reproduce (a few minutes; the machine is shared, so nice it)::

    cd /work/main && nice -n 10 .venv/bin/python bench/bench_index.py --sweep > /tmp/bench_index.md

Sections: (1) hash cost per crop: imagehash.phash on a PIL image vs shelfsense.hashing.phash_bits vs the full
Hasher.key (pHash + colour signature); (2) with --sweep, search P50 for each substring count m and radius, the
measurement behind shelfsense.index._CHUNKS_BY_DISTANCE; (3) lookup P50/P99 at 10k, 100k, 300k, 1M keys for
HammingIndex vs numpy XOR + np.bitwise_count over a uint64 array, add() cost and memory (tracemalloc).
All timings are per call, reported as percentiles (never means).
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from shelfsense.recognition.hashing import Hasher, phash_bits
from shelfsense.recognition.index import DEFAULT_SCAN_LIMIT, HammingIndex

ROOT = Path(__file__).resolve().parents[1]
GROCERY = ROOT.parent / "shared" / "datasets" / "grocery-store"


def pct(samples: list[float], p: float) -> float:
    return float(np.percentile(samples, p))


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def make_keys(n: int, max_distance: int, rng: random.Random) -> list[int]:
    keys: list[int] = []
    for _ in range(n):
        # One key in ten is a near-duplicate of an earlier one, like a product photographed again.
        if keys and rng.random() < 0.1:
            key = rng.choice(keys)
            for p in rng.sample(range(64), rng.randint(1, max_distance)):
                key ^= 1 << p
        else:
            key = rng.getrandbits(64)
        keys.append(key)
    return keys


def make_queries(keys: list[int], count: int, max_distance: int, rng: random.Random) -> list[int]:
    queries = []
    for _ in range(count):
        if rng.random() < 0.5:
            q = rng.choice(keys)
            for p in rng.sample(range(64), rng.randint(0, max_distance)):
                q ^= 1 << p
        else:
            q = rng.getrandbits(64)  # a miss: the common case for a new product in the slot
        queries.append(q)
    return queries


def time_calls(fn, args: list) -> list[float]:
    for a in args[:20]:
        fn(a)
    out = []
    clock = time.perf_counter
    for a in args:
        t = clock()
        fn(a)
        out.append(clock() - t)
    return out


def numpy_scan(arr: np.ndarray, ids: np.ndarray, radius: int):
    def search(q: int) -> list[tuple[int, int]]:
        dist = np.bitwise_count(arr ^ np.uint64(q))
        hit = np.flatnonzero(dist <= radius)
        order = np.lexsort((ids[hit], dist[hit]))
        return list(zip(dist[hit][order].tolist(), ids[hit][order].tolist(), strict=True))

    return search


def hash_section(count: int, quiet: bool) -> list[str]:
    paths = sorted(GROCERY.glob("val/**/*.jpg"))[:count]
    if not paths:
        return ["(hash section skipped: no grocery photos at " + str(GROCERY) + ")", ""]
    crops = [cv2.imread(str(p)) for p in paths]
    hasher = Hasher()

    def reference(c: np.ndarray) -> int:
        return int(str(imagehash.phash(Image.fromarray(cv2.cvtColor(c, cv2.COLOR_BGR2RGB)))), 16)

    rows = [
        "### Hash cost per crop (348x348 grocery photos, per call)",
        "",
        "| step | P50 us | P99 us |",
        "|---|---|---|",
    ]
    for name, fn in [
        ("imagehash.phash(PIL RGB) incl. BGR->RGB", reference),
        ("phash_bits (BGR raw unpack, same steps)", phash_bits),
        ("Hasher.key (phash + colour signature)", hasher.key),
    ]:
        samples = time_calls(fn, crops)
        rows.append(f"| {name} | {us(pct(samples, 50))} | {us(pct(samples, 99))} |")
    mismatched = sum(reference(c) != phash_bits(c) for c in crops)
    rows += ["", f"phash_bits differs from imagehash.phash on {mismatched} of {len(crops)} photos.", ""]
    return rows


MAX_SWEEP_PROBES = 20_000


def probe_count(m: int, d: int) -> int:
    """Dictionary probes per search for m substrings at radius d (the split HammingIndex.search uses)."""
    base, extra = divmod(d + 1, m)
    total = 0
    for i in range(m):
        width = 64 // m + (1 if i < 64 % m else 0)
        r = base - 1 + (1 if i < extra else 0)
        total += sum(math.comb(width, k) for k in range(r + 1))
    return total


def sweep_section(sizes: list[int], radii: list[int], chunk_options: list[int], quiet: bool) -> list[str]:
    rows = ["### Search P50 (us) by substring count m and radius d", ""]
    for n in sizes:
        rng = random.Random(n)
        keys = make_keys(n, 16, rng)
        queries = {d: make_queries(keys, 400, d, random.Random(d)) for d in radii}
        rows += [f"{n} keys:", "", "| m | " + " | ".join(f"d={d}" for d in radii) + " |", "|---|" + "---|" * len(radii)]
        for m in tqdm(chunk_options, desc=f"sweep {n}", file=sys.stderr, disable=quiet or not sys.stderr.isatty()):
            index = HammingIndex(max(radii), chunks=m, scan_limit=0)
            for i, k in enumerate(keys):
                index.add(k, i)
            cells = []
            for d in radii:
                if probe_count(m, d) > MAX_SWEEP_PROBES:
                    cells.append(f"({probe_count(m, d):,} probes)")
                    continue
                samples = time_calls(lambda q, d=d, index=index: index.search(q, d), queries[d])
                cells.append(us(pct(samples, 50)))
            rows.append(f"| {m} | " + " | ".join(cells) + " |")
            print(rows[-1], file=sys.stderr, flush=True)
            del index
            gc.collect()
        rows.append("")
    return rows


def main_section(sizes: list[int], radius: int, queries_n: int, quiet: bool) -> list[str]:
    rows = [
        f"### Lookup at radius {radius}: HammingIndex (m={HammingIndex(radius).chunks}, scan_limit "
        f"{DEFAULT_SCAN_LIMIT:,}) vs numpy linear scan",
        "",
        "ours = HammingIndex as configured (its own packed scan below scan_limit keys, substring tables "
        "above); tables = the same index forced onto the substring tables at every size (scan_limit=0).",
        "",
        "| keys | ours P50 us | ours P99 us | tables P50 us | tables P99 us | numpy P50 us | numpy P99 us | "
        "add P50 us | add P99 us | ours MiB | ours B/key | tables MiB | numpy MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in tqdm(sizes, desc="sizes", file=sys.stderr, disable=quiet or not sys.stderr.isatty()):
        rng = random.Random(n + 1)
        keys = make_keys(n, radius, rng)
        queries = make_queries(keys, queries_n, radius, random.Random(n + 2))

        index = HammingIndex(radius)
        add_samples = []
        clock = time.perf_counter
        for i, k in enumerate(keys):
            t = clock()
            index.add(k, i)
            add_samples.append(clock() - t)
        ours = time_calls(index.search, queries)
        forced = HammingIndex(radius, scan_limit=0)
        for i, k in enumerate(keys):
            forced.add(k, i)
        tables = time_calls(forced.search, queries)

        arr = np.array(keys, dtype=np.uint64)
        ids = np.arange(n, dtype=np.int64)
        scan = numpy_scan(arr, ids, radius)
        theirs = time_calls(scan, queries)
        # The two must agree, or the timings compare different work.
        for q in queries[:50]:
            assert index.search(q) == scan(q) == forced.search(q), "index and linear scan disagree"
        del index, forced
        gc.collect()

        def traced_bytes(scan_limit: int, keys=keys) -> int:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            measured = HammingIndex(radius, scan_limit=scan_limit)
            for i, k in enumerate(keys):
                measured.add(k, i)
            used = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
            del measured
            gc.collect()
            return used

        ours_bytes = traced_bytes(DEFAULT_SCAN_LIMIT)
        tables_bytes = traced_bytes(0)
        numpy_bytes = arr.nbytes + ids.nbytes
        rows.append(
            f"| {n:,} | {us(pct(ours, 50))} | {us(pct(ours, 99))} | {us(pct(tables, 50))} | "
            f"{us(pct(tables, 99))} | {us(pct(theirs, 50))} | {us(pct(theirs, 99))} | "
            f"{us(pct(add_samples, 50))} | {us(pct(add_samples, 99))} | {ours_bytes / 2**20:.1f} | "
            f"{ours_bytes / n:.0f} | {tables_bytes / 2**20:.1f} | {numpy_bytes / 2**20:.1f} |"
        )
    rows.append("")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,300000,1000000")
    ap.add_argument("--radius", type=int, default=8, help="search radius (the default cache.max_distance)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--hash-crops", type=int, default=200)
    ap.add_argument("--sweep", action="store_true", help="also sweep substring counts (slow)")
    ap.add_argument("--sweep-sizes", default="100000,1000000")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    out = [f"python {sys.version.split()[0]}, numpy {np.__version__}", ""]
    out += hash_section(args.hash_crops, args.quiet)
    if args.sweep:
        out += sweep_section(
            [int(s) for s in args.sweep_sizes.split(",")], [2, 4, 6, 8, 10, 12, 16], [2, 3, 4, 5, 6], args.quiet
        )
    out += main_section([int(s) for s in args.sizes.split(",")], args.radius, args.queries, args.quiet)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
