"""HTTP load on loopback: many cameras posting to a real `shelfsense serve` process.

Measures, in one run:
  * the hit path (every slot cached) and the miss path (cache off, every slot inferred): client-side and
    server-side latency P50/P99 at a modest load;
  * the highest total frame rate the hit path holds without errors (offered rate stepped up until the achieved
    rate falls below 95 % of it, or any request fails);
  * the hit path's server P50 next to the cost of decoding the same JPEG alone (the floor).

    .venv/bin/python bench/bench_http.py [--cameras 16] [--model M --labels L]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np
from bench_cache import footage, parser  # the script beside this one (its folder is on sys.path)

from shelfsense.bench.loopback import serve_command
from shelfsense.client import FramePoster
from shelfsense.types import percentiles

VIEWS = 10  # frames of one shelf in a row, as its fixed camera sends them


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, cameras: int, model: str, labels: str, cache: bool) -> tuple[subprocess.Popen, str]:
    model, labels = str(Path(model).resolve()), str(Path(labels).resolve())  # the config lives in tmp
    port = free_port()
    cams = "\n".join(f"[cameras.cam-{i}]\ngrid = {{ rows = 2, cols = 4 }}\n" for i in range(cameras))
    cfg = tmp / f"bench-{port}.toml"
    cfg.write_text(
        f'[server]\nmax_pending_frames = 256\n[model]\npath = "{model}"\nlabels = "{labels}"\nqueue_size = 4096\n'
        f'[cache]\nenabled = {"true" if cache else "false"}\ndisk_path = "{tmp / f"cache-{port}"}"\n{cams}'
    )
    proc = subprocess.Popen(
        serve_command(cfg, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            try:
                async with s.get(url + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("server did not become ready")


async def load(url: str, frames: list[bytes], cameras: int, fps_per_camera: float, seconds: float) -> dict:
    """Each camera posts at its pace (one request in flight, like a real camera); returns latencies and errors.

    Camera i watches shelf i % shelves: it cycles through that shelf's VIEWS fixed-camera frames.
    """
    shelves = len(frames) // VIEWS
    client_ms, server_ms, errors, sent = [], [], 0, 0
    deadline = time.monotonic() + seconds
    async with FramePoster(url, timeout_s=300.0, limit=cameras + 4) as poster:

        async def camera(i: int) -> None:
            nonlocal errors, sent
            period = 1.0 / fps_per_camera
            next_at = time.monotonic() + (i / cameras) * period
            n = 0
            mine = frames[(i % shelves) * VIEWS : (i % shelves + 1) * VIEWS]
            while True:
                now = time.monotonic()
                if now >= deadline:
                    return
                if next_at > now:
                    await asyncio.sleep(next_at - now)
                next_at += period
                body = mine[n % VIEWS]
                n += 1
                answer = await poster.post(f"cam-{i}", body, "image/jpeg")
                sent += answer.failure is None
                if answer.status != 200:
                    errors += 1
                    continue
                client_ms.append(answer.ms)
                server_ms.append(json.loads(answer.body)["latency_ms"])

        t0 = time.monotonic()
        await asyncio.gather(*(camera(i) for i in range(cameras)))
        elapsed = time.monotonic() - t0
    return {
        "sent": sent,
        "ok": len(client_ms),
        "errors": errors,
        "achieved_fps": len(client_ms) / elapsed,
        "offered_fps": cameras * fps_per_camera,
        "client_ms": client_ms,
        "server_ms": server_ms,
    }


def p(values: list[float], q: int) -> float:
    value = percentiles(values, (q,))[f"p{q}"]
    return float("nan") if value is None else value


async def main_async(args: argparse.Namespace) -> None:
    jpegs = footage(4, VIEWS, "fixed")
    decode = []
    for _ in range(200):
        t0 = time.perf_counter()
        cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR)
        decode.append((time.perf_counter() - t0) * 1000.0)

    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        try:
            hit_proc, hit_url = start_server(Path(tmp), args.cameras, args.model, args.labels, cache=True)
            miss_proc, miss_url = start_server(Path(tmp), args.cameras, args.model, args.labels, cache=False)
            procs = [hit_proc, miss_proc]
            await asyncio.gather(wait_ready(hit_url), wait_ready(miss_url))
            await load(hit_url, jpegs, 4, 10, 1.5)  # one pass over every shelf fills the cache
            hit = await load(hit_url, jpegs, args.cameras, 1.0, args.seconds)
            miss = await load(miss_url, jpegs, min(args.cameras, 4), 0.5, args.seconds)
            steps = []
            for fps in args.steps:
                r = await load(hit_url, jpegs, args.cameras, fps / args.cameras, args.step_seconds)
                steps.append(r)
                if r["errors"] or r["achieved_fps"] < 0.95 * r["offered_fps"]:
                    break
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)

    print(
        f"\nloopback, {args.cameras} cameras, 8-slot 640x480 JPEG frames, model {Path(args.model).name}, "
        f"{os.cpu_count()} cores shared by client and server\n"
    )
    print("| path | frames ok / sent | client P50 / P99 ms | server P50 / P99 ms |")
    print("|---|---|---|---|")
    for name, r in (("hit (every slot cached)", hit), ("miss (cache off, 8 inferences)", miss)):
        print(
            f"| {name} | {r['ok']} / {r['sent']} | {p(r['client_ms'], 50):.2f} / {p(r['client_ms'], 99):.2f} | "
            f"{p(r['server_ms'], 50):.2f} / {p(r['server_ms'], 99):.2f} |"
        )
    print("\n| offered fps (hit path) | achieved fps | errors | client P50 / P99 ms | server P50 / P99 ms |")
    print("|---|---|---|---|---|")
    held = 0.0
    for r in steps:
        ok = not r["errors"] and r["achieved_fps"] >= 0.95 * r["offered_fps"]
        held = max(held, r["offered_fps"]) if ok else held
        print(
            f"| {r['offered_fps']:.0f} | {r['achieved_fps']:.1f} | {r['errors']} | {p(r['client_ms'], 50):.2f} / "
            f"{p(r['client_ms'], 99):.2f} | {p(r['server_ms'], 50):.2f} / {p(r['server_ms'], 99):.2f} |"
        )
    floor = p(decode, 50)
    print(f"\nhighest offered rate held without errors: {held:.0f} frames/s")
    print(
        f"hit-path server P50 {p(hit['server_ms'], 50):.2f} ms vs decoding the same JPEG alone {floor:.2f} ms "
        f"({p(hit['server_ms'], 50) / floor:.1f}x the floor); miss/hit server P50: "
        f"{p(miss['server_ms'], 50) / p(hit['server_ms'], 50):.1f}x"
    )


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--step-seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=float, nargs="+", default=[16, 32, 64, 96, 128, 192, 256])
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
