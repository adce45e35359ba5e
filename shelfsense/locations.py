"""Where things live: the bundled config.toml and default model (a checkout's top level, or the wheel's package
data), and the directory writable state goes to by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BUNDLED_CONFIG", "BUNDLED_MODEL", "BUNDLE_DIR", "IN_CHECKOUT", "STATE_FIELD", "state_dir"]

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent
# A checkout (the editable install) keeps config.toml and models/ at its top, the layout the project promises its
# users; a wheel carries the same files as package data in shelfsense/bundle/ (pyproject.toml maps them there).
IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "config.toml").is_file()
BUNDLE_DIR = _CHECKOUT if IN_CHECKOUT else _PACKAGE / "bundle"
BUNDLED_CONFIG = BUNDLE_DIR / "config.toml"
BUNDLED_MODEL = BUNDLE_DIR / "models" / "grocery_int8.tflite"
STATE_FIELD = {"state": True}  # config field metadata: a writable path, kept out of site-packages


def state_dir() -> Path:
    """Where writable state goes by default: the checkout itself, or for an installed wheel $STATE_DIRECTORY
    (systemd's StateDirectory=), else $XDG_STATE_HOME/shelfsense (~/.local/state/shelfsense)."""
    if IN_CHECKOUT:
        return _CHECKOUT
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "shelfsense"
