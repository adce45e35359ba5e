"""`shelfsense bench capacity` on tiny synthetic footage with the fixture classifier: it starts a real server,
steps the cameras and reports. Timings are the machine's; only the accounting is checked here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shelfsense.bench.capacity import CameraStep, ModelChoice
from shelfsense.cli.bench import CAPACITY_COMMAND, route
from shelfsense.cli.main import main
from shelfsense.synth.synth import synthesize

FIXTURES = Path(__file__).parent / "fixtures" / "models"
SLOTS = 8


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("capacity") / "footage"
    synthesize(None, out, frames=12, size=(320, 240), rows=2, cols=4, seed=3, progress=False)
    return out


def test_capacity_runs_a_server_steps_the_cameras_and_reports(
    footage: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "capacity.toml"
    config.write_text(f'[model]\npath = "{FIXTURES / "colour_u8_128.tflite"}"\nthreads = 1\n')
    report = tmp_path / "capacity.json"
    argv = ["bench", "capacity", str(footage), "--config", str(config), "--cameras", "1", "2"]
    argv += ["--fps", "4", "--step-seconds", "1", "--p99-ms", "60000", "--budget-s", "60", "--report", str(report)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| colour_u8_128.tflite | 1 x 4 |" in printed
    assert "colour_u8_128.tflite: largest camera count that holds: " in printed
    (result,) = json.loads(report.read_text())
    assert result["model"].endswith("colour_u8_128.tflite") and result["warm_up_frames"] == 6
    assert [s["cameras"] for s in result["steps"]] == [1, 2][: len(result["steps"])]
    for step in result["steps"]:
        assert step["ok"] + step["refused"] + step["errors"] == step["sent"] > 0
        # every slot of every answered frame is counted once, as a hit or a miss
        assert sum(step["slots"].values()) == step["ok"] * SLOTS
        assert step["hit_share"] + step["miss_share"] == pytest.approx(1.0)
    assert result["largest_cameras_held"] in (0, 1, 2)


def test_a_step_holds_only_without_refusals_and_under_the_target() -> None:
    step = CameraStep(cameras=2, fps=1.0, seconds=1.0, sent=2, ok=2, client_ms=[10.0, 20.0])
    assert step.holds(p99_ms=50.0) and not step.holds(p99_ms=15.0)
    step.refused = 1
    assert not step.holds(p99_ms=50.0)
    slow = CameraStep(cameras=4, fps=1.0, seconds=1.0, sent=2, ok=2, client_ms=[10.0, 20.0])
    assert not slow.holds(p99_ms=50.0)  # 2 frames/s achieved of 4 offered


def test_bench_capacity_is_routed_and_models_parse() -> None:
    assert route(["-v", "bench", "capacity", "f"]) == ["-v", CAPACITY_COMMAND, "f"]
    assert route(["bench", "footage"]) == ["bench", "footage"]
    assert route(["serve", "capacity"]) == ["serve", "capacity"]
    choice = ModelChoice.parse("a.tflite:labels.txt")
    assert choice.path.name == "a.tflite" and choice.labels is not None and choice.labels.name == "labels.txt"
    assert ModelChoice.parse("a.tflite").labels is None
