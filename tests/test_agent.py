"""The camera agent against the real service (restarted, absent, refusing) and `record` on a real video file."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web
from conftest import colour_config

from shelfsense.agent import CameraAgent, run_agent
from shelfsense.app import SERVICE, create_app
from shelfsense.cli import main
from shelfsense.config import Config
from shelfsense.errors import SourceError
from shelfsense.footage import open_footage
from shelfsense.record import record
from shelfsense.synth import SynthResult, synthesize


async def start_server(config: Config, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(create_app(config), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, runner.addresses[0][1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until `condition` holds; the timeout only guards against hanging, it is not a speed check."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    # 640x480 frames are ~40 KB: a queue that grew with the dropped frames would show in tracemalloc.
    out = tmp_path_factory.mktemp("agent") / "shelf"
    return synthesize(None, out, frames=16, rows=2, cols=4, seed=5, progress=False)


async def test_agent_sends_frames_and_does_not_retry_refused_ones(tmp_path: Path, shelf: SynthResult) -> None:
    runner, port = await start_server(colour_config(tmp_path, {"cam-a": {"grid": {"rows": 2, "cols": 4}}}))
    try:
        url = f"http://127.0.0.1:{port}"
        # Looping, so frames dropped while one is in flight do not end the footage before max_frames.
        good = await run_agent(shelf.out, url, "cam-a", fps=50, loop=True, max_frames=6, backoff_base_s=0.01)
        # A camera the server does not know: 404 is not retried, the frame is given up at once.
        refused = await run_agent(shelf.out, url, "cam-unknown", fps=50, loop=True, max_frames=4, backoff_base_s=0.01)
        stats = runner.app[SERVICE].stats.snapshot()
    finally:
        await runner.cleanup()
    assert (good.sent, good.ok, good.failed, good.retries) == (6, 6, 0, 0) and not good.errors
    assert stats["cameras"]["cam-a"]["frames"] == 6
    assert (refused.sent, refused.ok, refused.failed) == (4, 0, 4)
    assert refused.errors == {"http_404": 4} and refused.retries == 0 and refused.attempts == 4


async def test_agent_recovers_when_the_server_restarts_on_the_same_port(tmp_path: Path, shelf: SynthResult) -> None:
    config = colour_config(tmp_path, {"cam-r": {}})
    runner, port = await start_server(config)
    stop = asyncio.Event()
    agents: list[CameraAgent] = []
    task = asyncio.create_task(
        run_agent(
            shelf.out,
            f"http://127.0.0.1:{port}",
            "cam-r",
            fps=20,
            loop=True,
            stop=stop,
            max_retries=2,
            backoff_base_s=0.02,
            backoff_cap_s=0.2,
            agent_out=agents,
        )
    )
    try:
        await until(lambda: bool(agents) and agents[0].stats.ok >= 5, "first frames to succeed")
        stats = agents[0].stats
        await runner.cleanup()
        await until(lambda: sum(stats.errors.values()) >= 3, "the agent to notice the server is gone")
        ok_while_down = stats.ok
        runner, _ = await start_server(config, port)
        await until(lambda: stats.ok >= ok_while_down + 5, "frames to succeed after the restart")
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 30)
        await runner.cleanup()
    assert result.reconnects >= 1
    assert result.ok >= ok_while_down + 5
    # Connection-level failures while it was down (a 503 from a server mid-shutdown is retried the same way).
    assert set(result.errors) <= {"connect", "disconnected", "timeout", "http_503"}
    assert set(result.errors) & {"connect", "disconnected", "timeout"}
    assert result.max_waiting <= 1 and result.max_attempts_per_frame <= 3
    # Every grabbed frame was sent or dropped as stale, bar the one waiting and the one held at the stop.
    assert 0 <= result.grabbed - result.sent - result.dropped <= 2


async def test_agent_with_server_down_drops_stale_frames_in_bounded_memory(shelf: SynthResult) -> None:
    stop = asyncio.Event()
    agents: list[CameraAgent] = []
    max_retries = 2
    tracemalloc.start()
    try:
        task = asyncio.create_task(
            run_agent(
                shelf.out,
                f"http://127.0.0.1:{free_port()}",
                "cam-d",
                fps=50,
                loop=True,
                stop=stop,
                max_retries=max_retries,
                backoff_base_s=0.01,
                backoff_cap_s=0.05,
                agent_out=agents,
            )
        )
        await until(lambda: bool(agents) and agents[0].stats.dropped >= 20, "frames to be dropped")
        agent = agents[0]
        waiting = [len(agent.slot)]
        base = tracemalloc.get_traced_memory()[0]
        # ~130 more frames of ~40 KB: about 5 MB if they were kept anywhere.
        target = agent.stats.dropped + 130
        await until(lambda: waiting.append(len(agent.slot)) or agent.stats.dropped >= target, "more drops")
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 30)  # stops on the event, mid-backoff
        tracemalloc.stop()
    frame_bytes = min(len(f.data) for f in open_footage(shelf.out))
    assert frame_bytes > 20_000
    assert grown < 20 * frame_bytes, f"memory grew by {grown} bytes while frames were being dropped"
    assert max(waiting) <= 1 and result.max_waiting == 1
    assert result.ok == 0 and result.reconnects == 0 and set(result.errors) == {"connect"}
    assert result.dropped >= 150 and result.failed >= result.sent - 1  # all but one in flight at the stop
    # Retries are bounded per frame, and the backoff delays stayed within their cap.
    assert result.max_attempts_per_frame <= 1 + max_retries
    assert result.attempts <= result.sent * (1 + max_retries)
    assert result.retries <= result.attempts and 0 < agent.stats.backoff_s <= 0.05
    assert 0 <= result.grabbed - result.sent - result.dropped <= 2


def write_video(path: Path, frames: int, fps: float) -> list[float]:
    """An MJPG AVI whose frame i has grey level 10 * i; returns those levels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    assert writer.isOpened()
    levels = []
    for i in range(frames):
        image = np.full((120, 160, 3), 10 * i, np.uint8)
        cv2.putText(image, str(i), (50, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 2)
        writer.write(image)
        levels.append(float(np.median(image)))
    writer.release()
    return levels


def test_record_video_file_at_lower_fps(tmp_path: Path) -> None:
    video = tmp_path / "shelf.avi"
    levels = write_video(video, 20, 10.0)
    result = record(str(video), tmp_path / "rec", fps=5.0, camera="cam-v", progress=False)
    assert result.frames == 10
    with open_footage(tmp_path / "rec") as footage:
        frames = list(footage)
        assert footage.cameras == ["cam-v"]
    assert [f.t for f in frames] == pytest.approx([0.2 * i for i in range(10)], abs=1e-3)
    assert {f.camera for f in frames} == {"cam-v"} and {f.content_type for f in frames} == {"image/jpeg"}
    # Every second video frame was kept: the grey levels say which.
    kept = [float(np.median(cv2.imdecode(np.frombuffer(f.data, np.uint8), cv2.IMREAD_GRAYSCALE))) for f in frames]
    assert kept == pytest.approx(levels[::2], abs=3)


def test_record_cli_duration_and_rotation(tmp_path: Path, capsys) -> None:
    video = tmp_path / "shelf.avi"
    write_video(video, 20, 10.0)
    out = tmp_path / "rec"
    code = main(["record", "--source", str(video), "--out", str(out), "--fps", "10", "--duration", "1.0"])
    assert code == 0 and "recorded 10 frames" in capsys.readouterr().err
    assert len(list(open_footage(out))) == 10
    capped = tmp_path / "capped"
    assert main(["record", "--source", str(video), "--out", str(capped), "--fps", "10", "--max-bytes", "8000"]) == 0
    kept = list(open_footage(capped))
    assert 0 < len(kept) < 20 and kept[-1].t == pytest.approx(1.9, abs=1e-3)  # the oldest rotated away


def test_record_refuses_sources_it_cannot_open(tmp_path: Path, capsys) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        record(str(tmp_path / "missing.avi"), tmp_path / "a", progress=False)
    fake = tmp_path / "fake.avi"
    fake.write_text("not a video")
    with pytest.raises(SourceError, match="cannot open capture source"):
        record(str(fake), tmp_path / "b", progress=False)
    assert not (tmp_path / "b").exists()  # nothing written for a source that never opened
    assert main(["record", "--source", str(tmp_path / "missing.avi"), "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["camera", "--source", str(fake), "--url", "http://127.0.0.1:9", "--camera", "x"]) == 2
    assert "cannot open capture source" in capsys.readouterr().err
