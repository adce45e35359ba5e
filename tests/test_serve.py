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
import numpy as np
import pytest
from conftest import FIXTURE_MODELS, jpeg, tile, wait_ready

from shelfsense.locations import BUNDLED_MODEL


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        # room for all eight 8-slot frames at once: admission reserves every slot of a frame
        "queue_size = 72\n"
        f'[cache]\ndisk_path = "cache"\n[cameras.shelf]\ngrid = {{ rows = 2, cols = 4 }}\n'
    )
    images = [cv2.imread(str(p)) for p in sorted((shared_dir / "images").glob("*.[bj][mp]*"))]
    # eight different shelves: 8 frames x 8 slots of inference on one thread keep the server busy
    frames = [jpeg(tile([cv2.flip(im, k % 2) for im in images] * 2, 2, 4), 60 + k) for k in range(8)]
    url = f"http://127.0.0.1:{port}"
    proc = _serve(env={"SHELFSENSE_CONFIG": str(config)})  # the config named by the environment
    try:
        await wait_ready(url, proc)
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
        await wait_ready(url, proc)
        async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/stats") as r:
            stats = await r.json()
        assert stats["cache"]["entries_disk"] >= answered  # at least one distinct product per answered frame
        assert stats["cache"]["disk_available"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


@pytest.mark.pi
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
            ready = await wait_ready(f"http://127.0.0.1:{port}", proc)
            assert ready["model"] == BUNDLED_MODEL.name
        else:
            ready = await wait_ready(f"http://127.0.0.1:{port}", proc, status=503)
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


def _colour_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    """A config on the tiny fixture model: a real server that starts in a moment and needs no shared data."""
    config = tmp_path / "site.toml"
    config.write_text(
        f'[server]\nport = {port}\nhost = "127.0.0.1"\n{extra}\n'
        f'[model]\npath = "{FIXTURE_MODELS / "colour_u8_128.tflite"}"\n'
        f'labels = "{FIXTURE_MODELS / "colour_u8_128_labels.txt"}"\nthreads = 1\n'
        f'[cache]\ndisk_path = "cache"\n[telemetry]\nsysfs_root = "no-sysfs"\nvcgencmd = "no-vcgencmd"\n'
        '[cameras.cam]\ntoken = "cam-secret-1"\n'
    )
    return config


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("port in use", "address already in use"),
        ("port out of range", "'server.port' must be 1..65535, got 99999"),
        ("host not on this machine", "cannot assign requested address"),
        ("config is a folder", "cannot be read: Is a directory"),
        ("config under a file", "cannot be read: Not a directory"),
        ("camera id HTTP refuses", 'cameras."bad id/x"'),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, case: str, message: str) -> None:
    port = _port()
    config = _colour_config(tmp_path, port)
    args = ["--config", str(config)]
    with socket.socket() as taken:
        if case == "port in use":
            taken.bind(("127.0.0.1", port))
            taken.listen()
        elif case == "port out of range":
            args += ["--port", "99999"]
        elif case == "host not on this machine":
            args += ["--host", "192.0.2.1"]  # TEST-NET-1: documentation only, never assigned to a machine
        elif case == "config is a folder":
            args = ["--config", str(tmp_path)]
        elif case == "config under a file":
            args = ["--config", str(config / "site.toml")]
        elif case == "camera id HTTP refuses":
            config.write_text(config.read_text() + '[cameras."bad id/x"]\n')
        out = subprocess.run(
            [sys.executable, "-m", "shelfsense.cli", "serve", *args], capture_output=True, text=True, timeout=60
        )
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("shelfsense: error: ")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr
    assert message in errors[0], errors


@pytest.mark.pi
async def test_tokens_never_reach_the_access_log(tmp_path: Path) -> None:
    port = _port()
    proc = _serve("--config", str(_colour_config(tmp_path, port, 'read_token = "read-secret-2"')))
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_ready(url, proc)
        frame = jpeg(np.full((48, 64, 3), (0, 0, 255), np.uint8))  # a red shelf, BGR
        async with aiohttp.ClientSession() as session:
            # a camera that can only put its token in the address, and the dashboard opened as documented,
            # whose page then asks for the stats with its own address as Referer
            async with session.post(
                f"{url}/v1/frames/cam?token=cam-secret-1", data=frame, headers={"Content-Type": "image/jpeg"}
            ) as r:
                assert r.status == 200, await r.text()
            async with session.get(f"{url}/?token=read-secret-2") as r:
                assert r.status == 200
            async with session.get(
                f"{url}/v1/stats?token=read-secret-2&x=1", headers={"Referer": f"{url}/?token=read-secret-2"}
            ) as r:
                assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stderr.read().decode()
    assert "secret" not in log, log
    assert '"POST /v1/frames/cam?token=redacted HTTP/1.1" 200' in log, log
    assert '"GET /v1/stats?token=redacted&x=1 HTTP/1.1" 200' in log and f'"{url}/?token=redacted"' in log, log
    assert f"stopped; disk cache {tmp_path / 'cache'} closed" in log, log


async def test_repeated_signal_during_shutdown_is_harmless(tmp_path: Path) -> None:
    """`timeout` signals the process and its group: the second signal arrives while the first is being handled."""
    port = _port()
    proc = _serve("--config", str(_colour_config(tmp_path, port)))
    try:
        await wait_ready(f"http://127.0.0.1:{port}", proc)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.stderr.read().decode()
    assert code == 0 and "Traceback" not in log, log
    assert "already stopping" in log and "stopped; disk cache" in log, log


def test_serve_help_says_what_it_does() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shelfsense.cli", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "Run the HTTP service" in out.stdout, out.stdout


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
