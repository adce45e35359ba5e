"""Footage truth for shelf state (per-slot states, take/restock/swap events) and the figures `shelfsense bench` and
`shelfsense replay` report against it. Real synth footage, the real bundled model, a real server socket."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_replay import serving

from shelfsense.bench.benchmark import run_benchmark
from shelfsense.bench.report import format_report
from shelfsense.footage import read_truth
from shelfsense.locations import BUNDLED_MODEL
from shelfsense.shelf.score import score_shelf
from shelfsense.synth.synth import SynthResult, synthesize
from shelfsense.tools.replay import replay


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    out = tmp_path_factory.mktemp("shelf-truth") / "shelf"
    return synthesize(None, out, frames=160, size=(480, 360), seed=5, swap_rate=0.5, progress=False)


def test_truth_rows_carry_states_and_the_changes_of_each_frame(footage: SynthResult) -> None:
    rows = read_truth(footage.out / "truth.jsonl")
    assert [row.states for row in rows] == list(footage.states)
    for row, cover in zip(rows, footage.coverage, strict=True):
        for name, state, c in zip(row.slots, row.states, cover, strict=True):
            assert state == ("occluded" if c > 0.3 else "empty" if name is None else "product")
    events = [(e["type"], e["slot"], row.frame, e["before"], e["after"]) for row in rows for e in row.events]
    assert events == list(footage.events)
    kinds = [e[0] for e in events]
    assert kinds.count("take") == footage.takes and kinds.count("restock") == footage.restocks
    assert kinds.count("swap") == footage.swaps > 0
    for kind, _, _, before, after in events:
        assert {"take": before and after is None, "restock": before is None and after, "swap": before != after}[kind]
        if kind == "swap":
            assert before and after


def test_without_swaps_the_footage_is_what_it_was(tmp_path: Path) -> None:
    """swap_rate 0 draws nothing extra from the generator: the same frames as footage made before swaps existed."""
    a = synthesize(None, tmp_path / "a", frames=60, size=(320, 240), seed=3, progress=False)
    b = synthesize(None, tmp_path / "b", frames=60, size=(320, 240), seed=3, swap_rate=0.0, progress=False)
    frames = sorted((a.out / "frames").rglob("*.jpg"))
    assert frames and all(f.read_bytes() == (b.out / f.relative_to(a.out)).read_bytes() for f in frames)
    assert a.swaps == 0 and {e[0] for e in a.events} <= {"take", "restock"}


def test_scoring_matches_events_within_the_window_and_counts_the_rest_false() -> None:
    truth = [["product"]] * 4 + [["empty"]] * 8 + [["product"]] * 8
    per_frame = [["product"]] * 4 + [["occluded"]] + [["empty"]] * 7 + [["product"]] * 8
    debounced = [["product"]] * 7 + [["empty"]] * 9 + [["product"]] * 4
    truth_events = [("take", 0, 4), ("restock", 0, 12)]
    detected = [("product_removed", 0, 7), ("restocked", 0, 15), ("restocked", 0, 19)]
    score = score_shelf(truth, per_frame, debounced, detected, truth_events, confirm_frames=3)
    assert score["events"]["product_removed"] == {
        "truth": 1,
        "detected": 1,
        "precision": 1.0,
        "recall": 1.0,
        "median_delay_frames": 3,
    }
    assert score["events"]["restocked"]["precision"] == 0.5 and score["events"]["restocked"]["recall"] == 1.0
    assert score["false_events_per_1000_slot_frames"] == 50.0
    assert score["empty_frame"]["recall"] == 0.875  # the first empty frame read occluded
    assert score["empty_settled"] == {"precision": 1.0, "recall": 1.0, "tp": 3, "fp": 0, "fn": 0}


def test_bench_reports_shelf_state_against_the_truth(footage: SynthResult, tmp_path: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(f'[model]\npath = "{BUNDLED_MODEL}"\n[cache]\ndisk_path = ""\n')
    from shelfsense.config import load_config

    report = run_benchmark(
        footage.out, config=load_config(config), config_given=True, modes=["perceptual"], progress=False
    )
    shelf = report["modes"]["perceptual"]["shelf"]
    assert shelf["slot_frames"] == 160 * 8 and shelf["confirm_frames"] == 3
    removed = shelf["events"]["product_removed"]
    assert removed["truth"] >= 1 and removed["precision"] == 1.0 and removed["recall"] >= 0.5
    assert shelf["empty_settled"]["precision"] >= 0.9 and shelf["empty_settled"]["recall"] >= 0.9
    assert "shelf state, perceptual cache" in format_report(report, 4.0)


async def test_replay_reports_states_and_events_read_back_from_the_server(
    footage: SynthResult, own_config, tmp_path: Path
) -> None:
    config = own_config(cameras={footage.camera: {"slots": [list(b) for b in footage.slots]}})
    async with serving(config) as url:
        report = await replay([footage.out], url, speed=None, truth=footage.out / "truth.jsonl")
    shelf = report.as_dict()["shelf"][footage.camera]
    assert shelf["events_read"] is True and shelf["empty_settled"] is None  # the debounced state is the bench's
    assert shelf["state_accuracy"] >= 0.8 and shelf["empty_frame"]["precision"] >= 0.9
    removed = shelf["events"]["product_removed"]
    assert removed["truth"] >= 1 and removed["precision"] == 1.0 and removed["median_delay_frames"] <= 4
    assert f"shelf {footage.camera}" in report.table()
