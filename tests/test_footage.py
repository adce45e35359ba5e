from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from shelfsense.footage import (
    Frame,
    RecordingWriter,
    TruthRow,
    natural_key,
    open_footage,
    read_truth,
    write_truth,
)


def jpeg(value: int, size: tuple[int, int] = (32, 24)) -> bytes:
    """A small real JPEG whose content depends on `value`, so frames are told apart by their bytes."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = value % 256
    img[:, : w // 2, 1] = (value * 7) % 256
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def png(value: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((8, 8, 3), value % 256, np.uint8))
    assert ok
    return buf.tobytes()


def test_recording_roundtrip_preserves_bytes_cameras_times_and_order(tmp_path: Path) -> None:
    posted = []
    with RecordingWriter(tmp_path / "rec") as writer:
        for i in range(9):
            camera = ("shelf-1", "shelf-2", "door")[i % 3]
            data, kind = (png(i), "image/png") if i == 4 else (jpeg(i), "image/jpeg")
            assert writer.write(camera, data, kind, t=0.5 * i)
            posted.append((camera, data, kind, 0.5 * i))

    with open_footage(tmp_path / "rec") as footage:
        assert len(footage) == 9
        assert footage.cameras == ["shelf-1", "shelf-2", "door"]
        frames = list(footage)
    assert [(f.camera, f.data, f.content_type, f.t) for f in frames] == posted
    assert [f.index for f in frames] == list(range(9))

    lines = (tmp_path / "rec" / "index.jsonl").read_text().splitlines()
    entry = json.loads(lines[4])
    assert entry["file"] == "frames/shelf-2/000000004.png"
    assert entry["bytes"] == len(posted[4][1])
    assert entry["wall"].endswith("Z")
    meta = json.loads((tmp_path / "rec" / "meta.json").read_text())
    assert meta["cameras"] == ["shelf-1", "shelf-2", "door"]


def test_camera_filter_keeps_frame_numbers(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "rec", cameras=["a"]) as writer:
        assert writer.write("a", jpeg(1), "image/jpeg", t=0.0)
        assert not writer.write("b", jpeg(2), "image/jpeg", t=0.1)
        assert writer.write("a", jpeg(3), "image/jpeg", t=0.2)
    assert [f.data for f in open_footage(tmp_path / "rec")] == [jpeg(1), jpeg(3)]

    with RecordingWriter(tmp_path / "both") as writer:
        for i, camera in enumerate("abab"):
            writer.write(camera, jpeg(i), "image/jpeg", t=i)
    only_b = open_footage(tmp_path / "both", camera="b")
    assert [(f.camera, f.index) for f in only_b] == [("b", 1), ("b", 3)]
    assert len(only_b) == 2


def test_default_timestamps_increase_and_reopening_appends(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "rec") as writer:
        writer.write("cam", jpeg(1), "image/jpeg")
        writer.write("cam", jpeg(2), "image/jpeg")
    with RecordingWriter(tmp_path / "rec") as writer:
        writer.write("cam", jpeg(3), "image/jpeg")
    frames = list(open_footage(tmp_path / "rec"))
    assert [f.data for f in frames] == [jpeg(1), jpeg(2), jpeg(3)]
    assert frames[0].t <= frames[1].t <= frames[2].t
    # Frame files keep unique names across writer sessions.
    names = [json.loads(x)["file"] for x in (tmp_path / "rec" / "index.jsonl").read_text().splitlines()]
    assert len(set(names)) == 3


def test_rotation_drops_oldest_segments_and_reading_still_works(tmp_path: Path) -> None:
    frame_bytes = len(jpeg(0))
    cap = 12 * frame_bytes
    with RecordingWriter(tmp_path / "rec", max_bytes=cap, segment_bytes=3 * frame_bytes) as writer:
        for i in range(40):
            writer.write("cam", jpeg(i), "image/jpeg", t=float(i))
            assert writer.total_bytes <= cap + 4 * frame_bytes
        assert writer.total_bytes <= cap

    segments = sorted(p.name for p in (tmp_path / "rec").glob("seg-*"))
    assert 2 <= len(segments) <= 5
    assert "seg-000001" not in segments  # the oldest went first
    assert not (tmp_path / "rec" / "index.jsonl").exists()

    frames = list(open_footage(tmp_path / "rec"))
    kept = [int(f.t) for f in frames]
    assert kept == list(range(kept[0], 40))  # the newest frames, contiguous and in order
    assert kept[0] > 0
    assert all(f.data == jpeg(int(f.t)) for f in frames)
    on_disk = sum(p.stat().st_size for p in (tmp_path / "rec").rglob("*") if p.suffix == ".jpg")
    assert on_disk <= cap


def test_rotated_recording_can_be_continued(tmp_path: Path) -> None:
    size = len(jpeg(0))
    with RecordingWriter(tmp_path / "rec", max_bytes=100 * size, segment_bytes=2 * size) as writer:
        for i in range(5):
            writer.write("cam", jpeg(i), "image/jpeg", t=float(i))
    with RecordingWriter(tmp_path / "rec", max_bytes=100 * size, segment_bytes=2 * size) as writer:
        writer.write("cam", jpeg(5), "image/jpeg", t=5.0)
    assert [f.data for f in open_footage(tmp_path / "rec")] == [jpeg(i) for i in range(6)]


def test_continued_recording_dates_new_frames_after_the_last_one(tmp_path: Path) -> None:
    # Each session's caller counts from 0, as `shelfsense record` does; the server's tap uses the writer's clock.
    for _ in range(2):
        with RecordingWriter(tmp_path / "rec") as writer:
            for i in range(3):
                writer.write("cam", jpeg(i), "image/jpeg", t=0.5 * i)
    with RecordingWriter(tmp_path / "rec") as writer:
        writer.write("cam", jpeg(9), "image/jpeg")
    times = [f.t for f in open_footage(tmp_path / "rec")]
    # One recorded frame interval (0.5 s) after the last frame, then the caller's own spacing.
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])

    # Rotated: the last segment holds one frame, so the interval comes from the segment before it.
    size = len(jpeg(0))
    for _ in range(2):
        with RecordingWriter(tmp_path / "seg", max_bytes=100 * size, segment_bytes=2 * size) as writer:
            for i in range(3):
                writer.write("cam", jpeg(i), "image/jpeg", t=float(i))
    assert [f.t for f in open_footage(tmp_path / "seg")] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


def test_footage_help_names_only_commands_it_has(capsys) -> None:
    from shelfsense.cli.main import build_parser, main

    with pytest.raises(SystemExit):
        main(["--help"])
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("footage "))
    sub = build_parser()._subparsers._group_actions[0].choices["footage"]
    commands = set(sub._subparsers._group_actions[0].choices)
    assert commands and all(name in line for name in commands)
    # Verbs of commands that live elsewhere (`shelfsense record`) or do not exist must not be promised here.
    assert not [verb for verb in ("record", "inspect") if verb in line and verb not in commands], line


def test_truncated_last_index_line_is_tolerated_and_repaired(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "rec") as writer:
        for i in range(3):
            writer.write("cam", jpeg(i), "image/jpeg", t=float(i))
    index = tmp_path / "rec" / "index.jsonl"
    with index.open("a") as f:
        f.write('{"camera": "cam", "t": 3.0, "wall": "2026-')  # the process died mid-line

    footage = open_footage(tmp_path / "rec")
    assert [f.data for f in footage] == [jpeg(0), jpeg(1), jpeg(2)]
    assert len(footage) == 3

    # A new writer cuts the half line instead of gluing its first line onto it.
    with RecordingWriter(tmp_path / "rec") as writer:
        writer.write("cam", jpeg(9), "image/jpeg", t=9.0)
    assert [f.data for f in open_footage(tmp_path / "rec")] == [jpeg(0), jpeg(1), jpeg(2), jpeg(9)]


def test_corrupt_index_line_in_the_middle_is_an_error_naming_the_line(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "rec") as writer:
        writer.write("cam", jpeg(0), "image/jpeg", t=0.0)
    index = tmp_path / "rec" / "index.jsonl"
    index.write_text(index.read_text() + "garbage\n" + index.read_text())
    with pytest.raises(ValueError, match=r"index\.jsonl:2"):
        list(open_footage(tmp_path / "rec"))


def test_writer_rejects_unsafe_camera_ids_and_unknown_types(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "rec") as writer:
        with pytest.raises(ValueError, match="camera id"):
            writer.write("../escape", jpeg(0), "image/jpeg")
        with pytest.raises(ValueError, match="image/gif"):
            writer.write("cam", b"GIF89a", "image/gif")
        # A multipart post carries the image type in its part; the bytes say it as well.
        assert writer.write("cam", png(1), "multipart/form-data", t=0.0)
    assert [(f.content_type, f.data) for f in open_footage(tmp_path / "rec")] == [("image/png", png(1))]
    assert not (tmp_path / "escape").exists()


def test_writer_refuses_a_folder_holding_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        RecordingWriter(tmp_path)


def test_folder_of_frames_is_natural_sorted_and_corrupt_files_pass_through(tmp_path: Path) -> None:
    order = [1, 2, 9, 10, 11, 100]
    for n in reversed(order):
        (tmp_path / f"frame{n}.jpg").write_bytes(jpeg(n))
    (tmp_path / "frame20.png").write_bytes(png(20))
    (tmp_path / "frame30.jpg").write_bytes(b"not really a jpeg")
    (tmp_path / "readme.txt").write_text("ignored")

    footage = open_footage(tmp_path, fps=4.0, camera="shelf-9")
    frames = list(footage)
    assert len(footage) == 8
    names = [1, 2, 9, 10, 11, 20, 30, 100]
    expected = {n: jpeg(n) for n in order} | {20: png(20), 30: b"not really a jpeg"}
    assert [f.data for f in frames] == [expected[n] for n in names]
    assert frames[5].content_type == "image/png"
    assert frames[6].content_type == "image/jpeg"
    assert [f.t for f in frames] == [i / 4.0 for i in range(8)]
    assert {f.camera for f in frames} == {"shelf-9"}
    assert natural_key("frame2.jpg") < natural_key("frame10.jpg")


def test_video_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    assert writer.isOpened()
    levels = [20, 60, 100, 140, 180, 220, 250]
    for level in levels:
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()

    footage = open_footage(path, jpeg_quality=95, camera="vid")
    assert len(footage) == len(levels)
    frames = list(footage)
    assert len(frames) == len(levels)
    for frame, level in zip(frames, levels, strict=True):
        assert isinstance(frame, Frame)
        assert frame.content_type == "image/jpeg" and frame.camera == "vid"
        image = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (48, 64, 3)
        assert abs(float(image.mean()) - level) < 6
    assert [f.t for f in frames] == pytest.approx([i / 5.0 for i in range(len(levels))], abs=1e-3)
    # Iterating again starts over from the first frame.
    assert next(iter(footage)).index == 0
    footage.close()


def test_footage_streams_lazily_and_close_ends_iteration(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "rec") as writer:
        for i in range(5):
            writer.write("cam", jpeg(i), "image/jpeg", t=float(i))
    footage = open_footage(tmp_path / "rec")
    frames = iter(footage)
    assert next(frames).data == jpeg(0)
    # Frames are read when reached, not at open: a later file removed now is noticed.
    (tmp_path / "rec" / "frames" / "cam" / "000000003.jpg").unlink()
    assert next(frames).data == jpeg(1)
    footage.close()
    assert list(frames) == []
    with pytest.raises(ValueError, match="closed"):
        iter(footage)


def test_missing_frame_file_error_names_it(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "rec") as writer:
        writer.write("cam", jpeg(0), "image/jpeg", t=0.0)
    (tmp_path / "rec" / "frames" / "cam" / "000000000.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="000000000.jpg"):
        list(open_footage(tmp_path / "rec"))


def test_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        open_footage(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=str(empty)):
        open_footage(empty)
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    with pytest.raises(ValueError, match=str(unknown)):
        open_footage(unknown)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 256)
    with pytest.raises(ValueError, match=str(broken)):
        open_footage(broken)


def test_truth_roundtrip(tmp_path: Path) -> None:
    rows = [
        TruthRow("cam-0", 0, ("Golden-Delicious", None, "Oatly-Oat-Milk")),
        {"camera": "cam-0", "frame": 1, "slots": [None, None, "Oatly-Oat-Milk"]},
    ]
    assert write_truth(tmp_path / "truth.jsonl", rows) == 2
    first = json.loads((tmp_path / "truth.jsonl").read_text().splitlines()[0])
    assert first == {"camera": "cam-0", "frame": 0, "slots": ["Golden-Delicious", None, "Oatly-Oat-Milk"]}
    back = read_truth(tmp_path / "truth.jsonl")
    assert back == [rows[0], TruthRow("cam-0", 1, (None, None, "Oatly-Oat-Milk"))]

    (tmp_path / "bad.jsonl").write_text('{"camera": "c", "frame": 0, "slots": [1, 2]}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        read_truth(tmp_path / "bad.jsonl")


def test_writer_shared_by_executor_threads_loses_nothing(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    payloads = {f"cam-{c}": [jpeg(c * 100 + i) for i in range(25)] for c in range(4)}
    with RecordingWriter(tmp_path / "rec") as writer, ThreadPoolExecutor(4) as pool:

        def post(camera: str) -> None:
            for data in payloads[camera]:
                writer.write(camera, data, "image/jpeg")

        list(pool.map(post, payloads))
    frames = list(open_footage(tmp_path / "rec"))
    assert len(frames) == 100
    for camera, sent in payloads.items():
        assert [f.data for f in frames if f.camera == camera] == sent
