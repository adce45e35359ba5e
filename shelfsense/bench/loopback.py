"""A real `shelfsense serve` process on loopback for load benchmarks: its own config, port and disk cache.

The server runs in a subprocess, as in service, so that the load generator's event loop and the server's do
not share an interpreter (and a GIL). It is started with the command line, not imported: the bench sits above
the service and only talks to it over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

import aiohttp

from shelfsense.config import CameraConfig, Config
from shelfsense.errors import ConfigError

__all__ = ["ServerProcess"]

READY_TIMEOUT_S = 60.0  # loading MobileNetV2 and opening the cache take a few seconds on a loaded machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml(value: object) -> str:
    # JSON strings, numbers, booleans and arrays of numbers are valid TOML values too.
    return json.dumps(str(value) if isinstance(value, Path) else value)


def _camera_table(camera_id: str, slots: CameraConfig) -> str:
    lines = [f"[cameras.{camera_id}]"]
    if slots.slots:
        lines.append(f"slots = {_toml([list(box) for box in slots.slots])}")
    elif slots.grid is not None:
        roi = f", roi = {_toml(list(slots.grid.roi))}" if slots.grid.roi else ""
        lines.append(f"grid = {{ rows = {slots.grid.rows}, cols = {slots.grid.cols}{roi} }}")
    if slots.width and slots.height:
        lines += [f"width = {slots.width}", f"height = {slots.height}"]
    return "\n".join(lines)


def server_toml(
    config: Config, model: Path, labels: Path | None, cameras: list[str], slots: CameraConfig, cache_dir: Path
) -> str:
    """The config's model, cache and admission settings with this model, a fresh disk cache and the cameras."""
    m, c, s = config.model, config.cache, config.server
    model_lines = [f"path = {_toml(model)}"] + ([f"labels = {_toml(labels)}"] if labels else [])
    sections = [
        "[server]",
        f"max_pending_frames = {s.max_pending_frames}",
        f"max_connections = {max(s.max_connections, len(cameras) + 16)}",
        "[model]",
        *model_lines,
        f"runtime = {_toml(m.runtime)}",
        f"threads = {m.threads}",
        f"interpreter_threads = {m.interpreter_threads}",
        f"queue_size = {m.queue_size}",
        "[cache]",
        f"enabled = {_toml(c.enabled)}",
        f"hash = {_toml(c.hash)}",
        f"max_distance = {c.max_distance}",
        f"colour_tolerance = {c.colour_tolerance}",
        f"key_reuse_threshold = {c.key_reuse_threshold}",
        f"confirm_inferences = {c.confirm_inferences}",
        f"memory_entries = {c.memory_entries}",
        f"disk_path = {_toml(cache_dir)}",
        f"disk_bytes = {c.disk_bytes}",
        "[telemetry]",
        f"sysfs_root = {_toml(config.telemetry.sysfs_root)}",
        f"vcgencmd = {_toml(config.telemetry.vcgencmd)}",
    ]
    return "\n".join(sections + [_camera_table(cam, slots) for cam in cameras]) + "\n"


def serve_command(config: Path, port: int) -> list[str]:
    """`shelfsense serve` on loopback with this interpreter: the one command line every bench server runs."""
    return [
        sys.executable,
        "-m",
        "shelfsense.cli",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


class ServerProcess:
    """`async with ServerProcess(...) as server:` a ready server at `server.url`; stopped (SIGTERM) on exit."""

    def __init__(
        self, config: Config, model: Path, labels: Path | None, cameras: list[str], slots: CameraConfig
    ) -> None:
        self._text = lambda cache_dir: server_toml(config, model, labels, cameras, slots, cache_dir)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None
        self.url = ""

    async def __aenter__(self) -> ServerProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="shelfsense-capacity-")
        folder = Path(self._tmp.name)
        path = folder / "capacity.toml"
        path.write_text(self._text(folder / "cache"), encoding="utf-8")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (folder / "serve.log").open("wb")
        self._proc = subprocess.Popen(serve_command(path, port), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            await self._wait_ready(folder / "serve.log")
        except BaseException:
            self._stop()
            raise
        return self

    async def _wait_ready(self, log: Path) -> None:
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while loop.time() < deadline:
                if self._proc.poll() is not None:
                    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                    raise ConfigError(f"shelfsense serve exited ({self._proc.returncode}): {' / '.join(tail)}")
                try:
                    async with session.get(self.url + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise ConfigError(f"shelfsense serve was not ready within {READY_TIMEOUT_S:g} s: {' / '.join(tail)}")

    def _stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._stop)
