"""Attacks against a real `shelfsense serve`, measured: time to answer and peak-RSS growth for decompression bombs,
a camera's latency beside 32 slow-body clients (side by side with the unloaded run), and /v1/stats cost.

    python bench/bench_reliability.py                       # this checkout
    python bench/bench_reliability.py --source /path/to/old/checkout   # the same attacks on another version

The server is started from `--source` (PYTHONPATH), on the bundled model, with a config that every version parses.
Figures go to docs/reliability.md with the command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import psutil

from shelfsense.types import percentiles

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def bombs() -> dict[str, bytes]:
    small = bytearray(_jpeg(np.zeros((16, 16, 3), np.uint8)))
    sof = small.index(b"\xff\xc0")
    small[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
    png = bytearray(cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    png[16:24] = struct.pack(">II", 32768, 32768)
    return {"JPEG claiming 30000x30000": bytes(small), "PNG claiming 32768x32768": bytes(png)}


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(source: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    config = tmp / "bench.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[model]\npath = "{ROOT / "models" / "grocery_int8.tflite"}"\n'
        f'[cache]\ndisk_path = "{tmp / "cache"}"\n[cameras.cam]\ngrid = {{ rows = 2, cols = 4 }}\n'
    )
    env = {**os.environ, "PYTHONPATH": str(source)}
    cmd = [sys.executable, "-m", "shelfsense.cli", "serve", "--config", str(config)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    return proc, f"http://127.0.0.1:{port}"


async def _ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(600):
        try:
            async with session.get(url + "/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("server never became ready")


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    async with session.post(f"{url}/v1/frames/cam", data=body, headers={"Content-Type": "image/jpeg"}) as r:
        await r.read()
        return r.status, (time.perf_counter() - t0) * 1000, r.content_type


async def camera_latencies(session: aiohttp.ClientSession, url: str, frame: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        status, ms, _ = await _post(session, url, frame)
        out.append(ms if status == 200 else float("inf"))
    return out


async def slow_clients(url: str, n: int) -> list[asyncio.StreamWriter]:
    port = int(url.rsplit(":", 1)[1])
    writers = []
    for _ in range(n):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/frames/cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
        writer.write(b"Content-Length: 1000000\r\n\r\n\xff\xd8\xff")
        writers.append(writer)
    return writers


async def trickle(writers: list[asyncio.StreamWriter], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for w in writers:
            if not w.is_closing():
                w.write(bytes(16))
        await asyncio.sleep(1.0)


async def run(source: Path, frames: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="shelfsense-rel-"))
    proc, url = start(source, tmp)
    rng = np.random.default_rng(0)
    frame = _jpeg(cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (9, 9), 0))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await _ready(session, url)
            await camera_latencies(session, url, frame, 20)  # warm: the frame's products are cached
            print(f"source: {source}\n\n| attack | status | answer ms | peak RSS growth MB |\n|---|---|---|---|")
            for name, body in bombs().items():
                before = _hwm_mb(proc.pid)
                status, ms, ctype = await _post(session, url, body)
                print(f"| {name} | {status} {ctype} | {ms:.1f} | {_hwm_mb(proc.pid) - before:.1f} |")
            alone = await camera_latencies(session, url, frame, frames)
            writers = await slow_clients(url, 32)
            stop = asyncio.Event()
            feeder = asyncio.create_task(trickle(writers, stop))
            await asyncio.sleep(0.5)
            loaded = await camera_latencies(session, url, frame, frames)
            stop.set()
            await feeder
            for w in writers:
                w.close()
            a, b = percentiles(alone), percentiles(loaded)
            refused = sum(ms == float("inf") for ms in loaded)
            print(f"\ncamera frame latency, {frames} frames each (ms): alone P50 {a['p50']} P99 {a['p99']}; ")
            print(f"beside 32 slow-body clients P50 {b['p50']} P99 {b['p99']} ({refused} refused)")
            ratio = (b["p99"] or float("inf")) / (a["p99"] or float("nan"))
            print(f"P99 ratio loaded / alone: {ratio:.2f}")
            t0 = time.perf_counter()
            async with session.get(url + "/v1/stats") as r:
                await r.read()
            print(f"/v1/stats answered in {(time.perf_counter() - t0) * 1000:.1f} ms")
            print(f"server RSS now {psutil.Process(proc.pid).memory_info().rss / 2**20:.0f} MB")
    finally:
        proc.terminate()
        proc.wait(30)


def stats_cost(cameras: int, fps: float = 100.0, window_s: float = 60.0) -> tuple[float, int]:
    """Median ms of Stats.snapshot() with `cameras` cameras and a full window of frames, and frames recorded."""
    from shelfsense.recognition.result import FrameResult, SlotResult
    from shelfsense.service.stats import Stats
    from shelfsense.types import Tier

    now = [0.0]
    stats = Stats(window_s=window_s, clock=lambda: now[0])
    slots = [SlotResult(i, (0, 0, 1, 1), "x", 0.9, Tier.MEMORY, 2, [], 0.0, 0.0) for i in range(8)]
    frames = int(fps * window_s)
    for i in range(frames):
        now[0] = i / fps
        stats.record(FrameResult(f"cam-{i % cameras}", 640, 480, slots, 1.0, 1.0, 0.1, 0.0, 3.0 + i % 7))
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        stats.snapshot()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout whose shelfsense package is served")
    parser.add_argument("--frames", type=int, default=200, help="camera frames per run (default 200)")
    args = parser.parse_args()
    asyncio.run(run(args.source.resolve(), args.frames))
    if args.source.resolve() == ROOT:
        for cameras in (8, 64, 6000):
            ms, frames = stats_cost(cameras)
            print(f"Stats.snapshot() with {cameras} cameras and {frames} frames in the window: {ms:.2f} ms (median)")


if __name__ == "__main__":
    main()
