"""RSS of a real `shelfsense serve` (bundled model) whose disk tier holds N entries, and how long it takes to open.

Reproduce (filling 1M entries takes a few minutes once; the filled folders are reused)::

    nice -n 10 .venv/bin/python bench/bench_rss.py --entries 0,100000,1000000 --folder /tmp/ss-rss

For each N: fill `<folder>/cache-N` with N entries in the service's own format (the names and values DiskTier
writes, under the bundled model's namespace), start the server on it, and report: seconds to /readyz, RSS
then, the latency of one frame posted right after /readyz (while a large index is still being built in the
background), seconds until /v1/stats counts every entry, and RSS once it does. RSS is psutil's rss of the
server process (resident pages, shared libraries included).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import diskcache
import numpy as np
import psutil

from shelfsense.bench.loopback import serve_command
from shelfsense.locations import BUNDLED_MODEL
from shelfsense.recognition.hashing import COLOUR_GRID
from shelfsense.recognition.runtime import file_sha256, find_labels, read_labels

DISK_BYTES = 2 * 1024**3  # large enough that diskcache's byte budget never culls the filled entries


def namespace() -> str:
    """The bundled model's namespace, as Recognizer.create derives it (model SHA-256 and hash algorithm)."""
    return f"{file_sha256(BUNDLED_MODEL)[:16]}-phash"


def fill(folder: Path, entries: int, seed: int = 1) -> float:
    """Fill `folder` with `entries` random keys in DiskTier's format; returns seconds (0 if already filled)."""
    cache = diskcache.Cache(str(folder), size_limit=DISK_BYTES)
    try:
        if len(cache) == entries:
            return 0.0
        cache.clear()
        started, rng, ns = time.perf_counter(), random.Random(seed), namespace()
        labels = read_labels(find_labels(BUNDLED_MODEL))
        colour_hex = 2 * 3 * COLOUR_GRID**2
        for start in range(0, entries, 10_000):
            with cache.transact():  # one SQLite commit per batch: ~20x faster than a commit a set
                for _ in range(start, min(entries, start + 10_000)):
                    top = rng.sample(labels, 3)
                    value = ([(top[0], 0.81), (top[1], 0.12), (top[2], 0.03)], 1)
                    cache.set(
                        f"{ns}:{rng.getrandbits(64):016x}:{rng.getrandbits(colour_hex * 4):0{colour_hex}x}", value
                    )
        return time.perf_counter() - started
    finally:
        cache.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except OSError:
        return 0, b""


def post_frame(url: str) -> float:
    frame = np.random.default_rng(3).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    body = cv2.imencode(".jpg", frame)[1].tobytes()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "image/jpeg"}, method="POST")
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as r:
        r.read()
    return time.perf_counter() - started


def measure(folder: Path, entries: int, tmp: Path) -> dict[str, float]:
    port = free_port()
    cfg = tmp / f"rss-{entries}.toml"
    # disk_entries leaves room for the first frame's 8 new entries: at exactly N they would evict a batch of
    # the oldest (as they should) and the index would never count N.
    cfg.write_text(
        f'[cache]\ndisk_path = "{folder}"\ndisk_bytes = {DISK_BYTES}\ndisk_entries = {entries + 1000}\n'
        "[cameras.shelf]\ngrid = { rows = 2, cols = 4 }\n"
    )
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    server = subprocess.Popen(
        serve_command(cfg, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        process = psutil.Process(server.pid)
        while get(base + "/readyz", 0.5)[0] != 200:
            if server.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError(f"server did not become ready (exit code {server.poll()})")
            time.sleep(0.05)
        ready_s, ready_rss = time.perf_counter() - started, process.memory_info().rss
        first_frame_s = post_frame(base + "/v1/frames/shelf")

        while json.loads(get(base + "/v1/stats")[1] or b"{}").get("cache", {}).get("entries_disk", -1) < entries:
            if time.perf_counter() - started > 300:
                raise RuntimeError("the disk index did not count every entry within 300 s")
            time.sleep(0.1)
        indexed_s = time.perf_counter() - started
        time.sleep(1.0)  # let the last batch's temporaries go
        return {
            "ready_s": ready_s,
            "ready_mib": ready_rss / 2**20,
            "first_frame_ms": first_frame_s * 1e3,
            "indexed_s": indexed_s,
            "indexed_mib": process.memory_info().rss / 2**20,
        }
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", default="0,100000,1000000")
    ap.add_argument("--folder", default="/tmp/shelfsense-rss", help="where the filled cache folders are kept")
    args = ap.parse_args(argv)
    rows = [
        "| disk entries | fill s | disk MiB | to /readyz s | RSS at /readyz MiB | first frame ms | "
        "all indexed s | RSS indexed MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.entries.split(",")):
            folder = Path(args.folder) / f"cache-{n}"
            fill_s = fill(folder, n)
            disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
            m = measure(folder, n, Path(tmp))
            rows.append(
                f"| {n:,} | {fill_s:.0f} | {disk:.0f} | {m['ready_s']:.2f} | {m['ready_mib']:.0f} | "
                f"{m['first_frame_ms']:.0f} | {m['indexed_s']:.2f} | {m['indexed_mib']:.0f} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
