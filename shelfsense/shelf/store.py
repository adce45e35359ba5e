"""The shelf state file (`<shelf.state_path>/state.json`): the confirmed state of every slot, across restarts.

Written whole and atomically (temporary file, then rename), so a crash mid-write leaves the previous state. A
missing file starts empty; an unreadable or malformed one starts empty too, with a warning naming the file, and
is set aside as `state.json.corrupt` so the next save does not hide what went wrong.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["StateStore"]

VERSION = 1


class StateStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        """The saved cameras (blocking); {} when there is none or it cannot be used."""
        if self.path is None or not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("version") != VERSION or not isinstance(raw.get("cameras"), dict):
                raise ValueError(f"not a version {VERSION} shelf state")
            return raw["cameras"]
        except (OSError, ValueError) as exc:
            self._set_aside(exc)
            return {}

    def _set_aside(self, exc: BaseException) -> None:
        assert self.path is not None
        aside = self.path.with_name(self.path.name + ".corrupt")
        log.warning(
            "shelf state %s unusable (%s); starting with an empty shelf state (kept as %s)", self.path, exc, aside.name
        )
        with contextlib.suppress(OSError):  # a read-only folder: the warning has said it all
            os.replace(self.path, aside)

    def save(self, cameras: dict[str, Any]) -> None:
        """Write the state (blocking; on the writer thread). A failing disk costs the restart state, not the service."""
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": VERSION, "cameras": cameras}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("shelf state %s: save failed (%s)", self.path, exc)
