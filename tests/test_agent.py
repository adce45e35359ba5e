"""The camera agent against the real service (restarted, absent, refusing) and `record` on a real video file."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web
from conftest import colour_config

from shelfsense.cli.main import main
from shelfsense.config import Config
from shelfsense.errors import SourceError
from shelfsense.footage import open_footage
from shelfsense.service.app import create_app
from shelfsense.service.state import SERVICE
from shelfsense.synth.synth import SynthResult, synthesize
from shelfsense.tools.agent import CameraAgent, run_agent
from shelfsense.tools.record import record


async def start_server(config: Config, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(create_app(config), shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, runner.addresses[0][1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`shelfsense ARGS` as a user runs it; the timeout turns a command that never ends into a failure."""
    cmd = [sys.executable, "-m", "shelfsense.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


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
        good = await run_agent(shelf.out, url, "cam-a", fps=50, max_frames=6, backoff_base_s=0.01)
        # A camera the server does not know: 404 is not retried, the frame is given up at once.
        refused = await run_agent(shelf.out, url, "cam-unknown", fps=50, max_frames=4, backoff_base_s=0.01)
        stats = runner.app[SERVICE].stats.snapshot()
    finally:
        await runner.cleanup()
    # max_frames counts frames grabbed; each was then sent or, if a newer one came while one was in flight, dropped.
    assert good.grabbed == 6 and good.sent + good.dropped == 6 and good.sent >= 1
    assert (good.ok, good.failed, good.retries) == (good.sent, 0, 0) and not good.errors
    assert stats["cameras"]["cam-a"]["frames"] == good.sent
    assert refused.grabbed == 4 and refused.sent + refused.dropped == 4 and refused.sent >= 1
    assert (refused.ok, refused.failed) == (0, refused.sent)
    assert refused.errors == {"http_404": refused.sent} and refused.retries == 0 and refused.attempts == refused.sent


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
    # The frame held mid-backoff at the stop is given up too: every frame sent failed.
    assert result.dropped >= 150 and result.failed == result.sent
    # Retries are bounded per frame, and the backoff delays stayed within their cap.
    assert result.max_attempts_per_frame <= 1 + max_retries
    assert result.attempts <= result.sent * (1 + max_retries)
    assert result.retries <= result.attempts and 0 < agent.stats.backoff_s <= 0.05
    assert 0 <= result.grabbed - result.sent - result.dropped <= 2


async def test_max_frames_ends_the_agent_while_the_server_is_down(shelf: SynthResult) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    # Newer frames keep replacing the one being retried; the run must still end after 5 frames.
    result = await asyncio.wait_for(
        run_agent(
            shelf.out,
            url,
            "cam-d",
            fps=20,
            loop=True,
            max_frames=5,
            max_retries=1,
            backoff_base_s=0.01,
            backoff_cap_s=0.05,
        ),
        60,
    )
    assert result.grabbed == 5 and result.sent + result.dropped == 5 and result.sent >= 1
    assert result.ok == 0 and result.failed == result.sent and set(result.errors) == {"connect"}

    args = ["camera", "--source", str(shelf.out), "--url", url, "--camera", "cam-d", "--fps", "20"]
    cli = run_cli(*args, "--max-frames", "5", "--max-retries", "1", "--backoff-cap", "0.05")
    assert cli.returncode == 1, cli.stderr
    assert "5 grabbed" in cli.stderr and f"nothing was delivered to {url}" in cli.stderr


def test_server_url_without_scheme_is_refused_at_once(shelf: SynthResult) -> None:
    address = f"127.0.0.1:{free_port()}"
    cli = run_cli("camera", "--source", str(shelf.out), "--url", address, "--camera", "cam-0", "--max-frames", "3")
    assert cli.returncode == 2
    assert f"--url must be an http:// or https:// URL, got '{address}'" in cli.stderr
    with pytest.raises(ValueError, match="--url must be an http"):
        asyncio.run(run_agent(shelf.out, "ftp://127.0.0.1:21", "cam-0", max_frames=1))


async def test_summary_windows_never_count_more_answers_than_frames_sent(
    tmp_path: Path, shelf: SynthResult, caplog: pytest.LogCaptureFixture
) -> None:
    # The real service, slow to answer its first frame: that answer lands in a later summary window.
    held, release = asyncio.Event(), asyncio.Event()

    @web.middleware
    async def hold_first_frame(request: web.Request, handler):
        if request.method == "POST" and not held.is_set():
            held.set()
            await release.wait()
        return await handler(request)

    app = create_app(colour_config(tmp_path, {"cam-s": {}}))
    app.middlewares.insert(0, hold_first_frame)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    caplog.set_level(logging.INFO, logger="shelfsense.tools.agent")
    window = re.compile(r"last [\d.]+ s: (\d+) sent, (\d+) ok, (\d+) failed")

    def windows() -> list[tuple[int, int, int]]:
        return [tuple(map(int, m.groups())) for r in caplog.records if (m := window.search(r.getMessage()))]

    stop = asyncio.Event()
    agents: list[CameraAgent] = []
    task = asyncio.create_task(
        run_agent(shelf.out, url, "cam-s", fps=20, loop=True, stop=stop, summary_s=0.05, agent_out=agents)
    )
    try:
        await until(held.is_set, "the first frame to reach the server")
        seen = len(windows())
        await until(lambda: len(windows()) > seen, "a summary while the first frame is unanswered")
        release.set()
        await until(lambda: agents[0].stats.ok >= 3, "answers after the release")
        seen = len(windows())
        await until(lambda: len(windows()) > seen, "a summary after those answers")
    finally:
        release.set()
        stop.set()
        result = await asyncio.wait_for(task, 30)
        await runner.cleanup()
    lines = windows()
    assert all(ok <= sent and ok + failed == sent for sent, ok, failed in lines), lines
    assert sum(sent for sent, _, _ in lines) >= 3 and result.ok + result.failed == result.sent


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


def test_record_twice_into_one_folder_continues_the_timestamps(tmp_path: Path) -> None:
    video = tmp_path / "shelf.avi"
    write_video(video, 20, 10.0)
    out = tmp_path / "rec"
    for _ in range(2):
        args = ["record", "--source", str(video), "--out", str(out), "--fps", "10", "--duration", "1.0", "--quiet"]
        assert main(args) == 0
    times = [json.loads(line)["t"] for line in (out / "index.jsonl").read_text().splitlines()]
    # The second run starts one frame interval after the first run's last frame, as replay's pacing needs.
    assert times == pytest.approx([0.1 * i for i in range(20)], abs=1e-3)


def test_record_errors_name_the_options_typed(tmp_path: Path, capsys) -> None:
    video = tmp_path / "shelf.avi"
    write_video(video, 10, 10.0)
    base = ["record", "--source", str(video), "--quiet", "--out"]
    assert main([*base, str(tmp_path / "a"), "--max-bytes", "0"]) == 2
    assert "--max-bytes must be positive, got 0" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "flat")]) == 0
    assert main([*base, str(tmp_path / "flat"), "--max-bytes", "100000"]) == 2
    err = capsys.readouterr().err
    assert "without a size cap" in err and "max_bytes" not in err


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
