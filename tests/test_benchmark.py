"""`shelfsense bench` on tiny synthetic footage with a real (tiny) TFLite classifier: no shared data needed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shelfsense.bench.baselines import MotionGate, motion_view
from shelfsense.bench.benchmark import MODES, run_benchmark
from shelfsense.bench.report import format_report
from shelfsense.cli.main import main
from shelfsense.config import load_config
from shelfsense.errors import ConfigError
from shelfsense.footage import read_truth
from shelfsense.synth.synth import synthesize

FIXTURES = Path(__file__).parent / "fixtures" / "models"
FRAMES = 40
SLOTS = 8
# The colour model answers which channel dominates a crop; named after the tiny products of those colours,
# its answers can be scored against synth's truth.
COLOUR_NAMES = ("red-carton", "green-can", "blue-carton")


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "footage"
    synthesize(None, out, frames=FRAMES, size=(320, 240), rows=2, cols=4, seed=7, progress=False)
    return out


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-config")
    (folder / "labels.txt").write_text("\n".join(COLOUR_NAMES) + "\n")
    path = folder / "bench.toml"
    path.write_text(
        f'[model]\npath = "{FIXTURES / "colour_u8_128.tflite"}"\nlabels = "labels.txt"\nthreads = 2\n'
        f'[cache]\ndisk_path = "{folder / "must-not-be-used"}"\n'
    )
    return path


@pytest.fixture(scope="module")
def report(footage: Path, config_file: Path) -> dict:
    return run_benchmark(footage, config=load_config(config_file), config_given=True, progress=False)


def test_every_mode_accounts_for_every_slot(report: dict, config_file: Path) -> None:
    assert list(report["modes"]) == list(MODES)
    assert not (config_file.parent / "must-not-be-used").exists()  # each run gets a fresh temporary disk tier
    assert report["slots_from"].endswith("camera.toml") and len(report["slots"]) == SLOTS
    for mode, m in report["modes"].items():
        assert m["frames"] == FRAMES and m["slots"] == FRAMES * SLOTS, mode
        # inferences are the interpreter's own count; hits are the slot results that did not come from one
        assert m["inferences"] + m["hits"] == m["slots"], (mode, m["sources"])
        assert sum(int(v) for v in m["inferred_by_slot"].values()) == m["inferences"], mode
        assert m["fps"] > 0


def test_no_cache_is_the_audit_and_fresh_inference_is_deterministic(report: dict) -> None:
    base, exact = report["modes"]["no-cache"], report["modes"]["exact"]
    assert base["inferences"] == FRAMES * SLOTS and base["hits"] == 0
    assert base["agreement"] == 1.0 and base["disagreements"]["total"] == 0
    # Sensor noise makes every crop's bytes new, so the exact-bytes cache infers each slot again, and those
    # second fresh inferences must equal the audit's labels.
    assert exact["agreement"] == 1.0


def test_perceptual_cache_saves_inferences_that_exact_bytes_cannot(report: dict) -> None:
    modes = report["modes"]
    ours, exact, gate = modes["perceptual"], modes["exact"], modes["motion"]
    assert ours["inferences"] < modes["no-cache"]["inferences"]
    assert ours["hits"] > exact["hits"]
    assert gate["inferences"] < modes["no-cache"]["inferences"]
    assert set(ours["sources"]) <= {"miss", "memory", "disk", "coalesced"}


def test_issue_criteria_that_hold_on_any_machine(report: dict) -> None:
    """The perceptual cache's criteria from the bench's issue, judged here rather than printed by the product.

    Frames/s against no cache (>= 5x) depends on the machine and the model, and agreement against model
    stability on footage long enough to measure both: those are for docs/benchmarks.md, not for a unit test.
    """
    modes = report["modes"]
    ours, base, exact = modes["perceptual"], modes["no-cache"], modes["exact"]
    assert (base["accuracy"]["rate"] - ours["accuracy"]["rate"]) * 100.0 <= 0.5
    assert ours["hits"] > exact["hits"]
    assert "acceptance" not in report and "PASS" not in format_report(report, 15.0)


def test_frame_cost_splits_the_perceptual_frames_and_bounds_the_speed_up(
    report: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    cost, ours = report["frame_cost"], report["modes"]["perceptual"]
    # Every perceptual frame is either all hits or waited on an inference, and the first frame cannot hit.
    assert cost["all_hit_frames"] + cost["other_frames"] == FRAMES
    assert 0 < cost["all_hit_frames"] < FRAMES and cost["other_frames"] >= 1
    hit = cost["all_hit_ms"]
    assert hit["decode"] > 0 and hit["keys"] > 0 and hit["lookups"] >= 0
    assert cost["ceiling"] == pytest.approx(cost["no_cache_ms"]["mean"] / hit["mean"])
    assert cost["other_ms"]["mean"] > 0 and ours["fps_vs_no_cache"] > 0  # timings compared in bench/, not here
    # The hit path against its floor, the same frames' JPEGs decoded alone: printed by the bench itself.
    hp = cost["hit_path"]
    assert hp["frames"] == cost["all_hit_frames"] and hp["decode_ms"] > 0 and hp["frame_ms"] > 0
    assert hp["ratio"] == pytest.approx(hp["frame_ms"] / hp["decode_ms"])
    text = format_report(report, 15.0)
    assert f"ceiling: at a 100 % hit rate the perceptual cache could reach {cost['ceiling']:.2f}x" in text
    assert f"= {hp['ratio']:.2f}x decoding the same JPEGs alone" in text


def test_accuracy_is_scored_against_the_right_frames_and_slots(report: dict, footage: Path) -> None:
    truth = [s for row in read_truth(footage / "truth.jsonl") for s in row.slots if s is not None]
    # Only products the colour model has a name for can be right; it names those by their dominant colour.
    nameable = sum(s in COLOUR_NAMES for s in truth) / len(truth)
    assert nameable > 0.3  # the seed puts red cartons and green cans on the shelf
    accuracy = report["modes"]["no-cache"]["accuracy"]
    assert accuracy["scored"] == len(truth)
    assert accuracy["rate"] == pytest.approx(nameable, abs=0.05)
    stability = report["stability"]
    assert stability["basis"].startswith("truth") and 0 < stability["same"] <= stability["pairs"]


def test_motion_gate_reuses_until_the_slot_changes(footage: Path) -> None:
    import cv2
    import numpy as np

    still = cv2.imread(str(next((footage / "frames" / "cam-0").glob("*.jpg"))))[20:120, 20:100]
    gate = MotionGate(1, threshold=15.0)
    key = motion_view(still)
    assert gate.reuse(0, key) is None
    gate.remember(0, key, [("red-carton", 0.9)])
    noisy = np.clip(still.astype(np.int16) + np.random.default_rng(0).integers(-3, 4, still.shape), 0, 255)
    assert gate.reuse(0, motion_view(noisy.astype(np.uint8))) == [("red-carton", 0.9)]
    covered = still.copy()
    covered[:, : still.shape[1] // 2] = 255 - covered[:, : still.shape[1] // 2]
    assert gate.reuse(0, motion_view(covered)) is None


def test_without_camera_toml_or_truth_one_whole_frame_slot(footage: Path, config_file: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(footage, bare, ignore=shutil.ignore_patterns("camera.toml", "truth.jsonl"))
    report = run_benchmark(bare, config=load_config(config_file), config_given=True, modes=["no-cache"], progress=False)
    base = report["modes"]["no-cache"]
    assert report["slots_from"] == "whole frame" and base["slots"] == FRAMES
    assert report["truth"] is None and "accuracy" not in base
    assert report["stability"]["basis"].endswith("(no truth)") and report["stability"]["pairs"] > 0
    # The truth file names eight slots per frame: against one whole-frame slot it is refused, not misread.
    with pytest.raises(ConfigError, match="8 slots"):
        run_benchmark(bare, config=load_config(config_file), truth=footage / "truth.jsonl", progress=False)


def test_cli_prints_the_table_and_writes_the_report(
    footage: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    code = main(
        ["bench", str(footage), "--config", str(config_file), "--modes", "exact", "--report", str(out), "--quiet"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| mode | frames/s |" in printed and "exact-bytes cache" in printed
    assert "ceiling" not in printed  # no perceptual run, no frame cost
    written = json.loads(out.read_text())
    assert list(written["modes"]) == ["no-cache", "exact"] and written["frame_cost"] is None
    assert written["modes"]["exact"]["inferences"] + written["modes"]["exact"]["hits"] == FRAMES * SLOTS
