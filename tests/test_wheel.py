"""A normal (non-editable) install: the wheel alone, in a fresh venv outside the checkout, serves the bundled model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from conftest import jpeg, wait_ready

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.wheel


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv's bin folder, with only the wheel installed (its dependencies from the machine's pip settings)."""
    work = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", ROOT, cwd=work)
    (wheel,) = (work / "dist").glob("shelfsense-*.whl")
    _run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    _run(work / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=work)
    return work / "venv" / "bin"


def test_wheel_carries_config_and_model(installed: Path) -> None:
    out = _run(
        installed / "python",
        "-c",
        "import shelfsense.locations as c; print(c.IN_CHECKOUT, c.BUNDLED_CONFIG.is_file(), c.BUNDLED_MODEL.is_file())",
        cwd=installed,
    )
    assert out.split() == ["False", "True", "True"]


async def test_wheel_serves_a_frame_from_another_directory(installed: Path, tmp_path: Path) -> None:
    port = _port()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("SHELFSENSE_CONFIG", "PYTHONPATH")}
    proc = subprocess.Popen(
        [installed / "shelfsense", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env, "XDG_STATE_HOME": str(state)},
    )
    url = f"http://127.0.0.1:{port}"
    frame = jpeg(np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8))
    try:
        ready = await wait_ready(url, proc, tries=600)
        assert ready["model"] == "grocery_int8.tflite"
        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": "image/jpeg"}
            async with session.post(f"{url}/v1/frames/shelf-1", data=frame, headers=headers) as r:
                assert r.status == 200, await r.text()
                result = await r.json()
        assert len(result["slots"]) == 8  # the bundled config's shelf-1: a 2x4 grid
        assert all(s["label"] for s in result["slots"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    # writable state went to the state directory, not into site-packages
    assert (state / "shelfsense" / "cache").is_dir()
    assert not list(installed.parent.glob("lib/python*/site-packages/shelfsense/bundle/cache"))
