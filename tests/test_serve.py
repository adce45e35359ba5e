"""`shelfsense serve` as store IT runs it: a real process on a real socket, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import cv2
import pytest
from conftest import jpeg, tile

from shelfsense.config import BUNDLED_MODEL


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _ready(url: str, proc: subprocess.Popen, status: int = 200) -> dict:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
            try:
                async with session.get(url + "/readyz") as r:
                    if r.status == status:
                        return await r.json()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("server never became ready")


def _serve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shelfsense.cli", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def test_sigterm_answers_in_flight_frames_and_closes_the_disk_cache(
    tmp_path: Path, mobilenet_v2: Path, imagenet_labels: Path, shared_dir: Path
) -> None:
    port = _port()
    config = tmp_path / "site.toml"
    config.write_text(
        f'[server]\nport = {port}\nhost = "127.0.0.1"\n'
        f'[model]\npath = "{mobilenet_v2}"\nlabels = "{imagenet_labels}"\nthreads = 1\n'
        f'[cache]\ndisk_path = "cache"\n[cameras.shelf]\ngrid = {{ rows = 2, cols = 4 }}\n'
    )
    images = [cv2.imread(str(p)) for p in sorted((shared_dir / "images").glob("*.[bj][mp]*"))]
    # eight different shelves: 8 frames x 8 slots of inference on one thread keep the server busy
    frames = [jpeg(tile([cv2.flip(im, k % 2) for im in images] * 2, 2, 4), 60 + k) for k in range(8)]
    url = f"http://127.0.0.1:{port}"
    proc = _serve(env={"SHELFSENSE_CONFIG": str(config)})  # the config named by the environment
    try:
        await _ready(url, proc)
        async with aiohttp.ClientSession() as session:

            async def post(body: bytes) -> int:
                async with session.post(
                    f"{url}/v1/frames/shelf", data=body, headers={"Content-Type": "image/jpeg"}
                ) as r:
                    await r.read()
                    return r.status

            in_flight = [asyncio.ensure_future(post(f)) for f in frames]
            await asyncio.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            statuses = await asyncio.gather(*in_flight, return_exceptions=True)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert statuses == [200] * len(frames), statuses
    answered = statuses.count(200)
    # the cache closed cleanly: a new process finds every answered frame's results on disk
    proc = _serve("--config", str(config))
    try:
        await _ready(url, proc)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/stats") as r:
            stats = await r.json()
        assert stats["cache"]["entries_disk"] >= answered  # at least one distinct product per answered frame
        assert stats["cache"]["disk_available"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


async def test_serve_on_bundled_config_from_any_directory(tmp_path: Path) -> None:
    """What the README's run command does, from an unrelated working directory."""
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shelfsense.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "SHELFSENSE_CONFIG"},
    )
    try:
        if BUNDLED_MODEL.exists():
            ready = await _ready(f"http://127.0.0.1:{port}", proc)
            assert ready["model"] == BUNDLED_MODEL.name
        else:
            ready = await _ready(f"http://127.0.0.1:{port}", proc, status=503)
            assert "does not exist" in ready["detail"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_bad_config_exits_with_the_key_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cache]\nmax_distance = 99\n")
    out = subprocess.run(
        [sys.executable, "-m", "shelfsense.cli", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "cache.max_distance" in out.stderr
    assert "Traceback" not in out.stderr


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
