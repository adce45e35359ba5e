"""Footage on disk: ShelfSense recordings, folders of frames and video files, plus ground-truth files.

`format` reads every kind lazily, `writer` appends frames to a recording, `truth` reads and writes ground truth,
`jpeg` is the one JPEG encoder.
The layout is described in docs/footage.md.
"""

from shelfsense.footage.format import Footage, Frame, RecordingFootage, natural_key, open_footage, video_frames
from shelfsense.footage.truth import TruthRow, read_truth, write_truth
from shelfsense.footage.writer import RecordingWriter

__all__ = [
    "Footage",
    "Frame",
    "RecordingFootage",
    "RecordingWriter",
    "TruthRow",
    "natural_key",
    "open_footage",
    "read_truth",
    "video_frames",
    "write_truth",
]
