from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import pytest

from shelfsense.config import Config, load_config, parse_config, slot_boxes
from shelfsense.errors import ConfigError
from shelfsense.locations import BUNDLED_CONFIG, BUNDLED_MODEL


def test_bundled_config_documents_every_default() -> None:
    """config.toml states each setting with the value the code uses when a user's file leaves it out."""
    bundled = load_config()
    defaults = Config()
    for section in ("server", "model", "cache", "telemetry", "record"):
        assert getattr(bundled, section) == getattr(defaults, section), section
    raw = tomllib.loads(BUNDLED_CONFIG.read_text())
    for section in ("server", "model", "cache", "telemetry", "record"):
        fields = {f.name for f in dataclasses.fields(getattr(defaults, section))}
        assert set(raw[section]) == fields, f"[{section}] in config.toml must list every setting"


def test_bundled_model_found_from_any_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config().model.path == BUNDLED_MODEL
    assert BUNDLED_MODEL.is_absolute()


def test_user_file_states_only_what_it_changes(tmp_path: Path) -> None:
    user = tmp_path / "site.toml"
    user.write_text('[cache]\nmax_distance = 4\ndisk_path = "mycache"\n[cameras.a]\ngrid = { rows = 1, cols = 3 }\n')
    config = load_config(user)
    assert config.cache.max_distance == 4
    assert config.cache.disk_path == tmp_path / "mycache"  # relative to the file that states it
    assert config.cache.memory_entries == Config().cache.memory_entries
    assert config.server == Config().server
    assert list(config.cameras) == ["a"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[cache]\nmax_distanse = 4\n", "cache.max_distanse"),
        ("[cache]\nmax_distance = 40\n", "cache.max_distance"),
        ("[cache]\nmax_distance = 'four'\n", "cache.max_distance"),
        ("[model]\nruntime = 'onnx'\n", "model.runtime"),
        ("[cache]\nhash = 'md5'\n", "cache.hash"),
        ("[servr]\nport = 1\n", "servr"),
        ("[server]\nport = 0\n", "server.port"),
        ("[cameras.a]\nslots = [[0, 0, 10]]\n", "cameras.a.slots[0]"),
        ("[cameras.a]\ngrid = { rows = 0, cols = 2 }\n", "cameras.a.grid.rows"),
        ("[cameras.a]\nzoom = 2\n", "cameras.a.zoom"),
        ("[cameras.a]\nslots = [[0, 0, 10, 10]]\ngrid = { rows = 1, cols = 1 }\n", "cameras.a"),
        ("[cameras.a]\nwidth = 100\nheight = 100\nslots = [[0, 0, 50, 50], [60, 60, 50, 50]]\n", "slot 1"),
        ("not toml = = 1", "not valid TOML"),
        ('[cameras."bad id/x"]\n', 'cameras."bad id/x"'),  # HTTP would refuse the id: it could never be reached
        ("[cameras.-x]\n", 'cameras."-x"'),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_config_path_that_is_not_a_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path} cannot be read: Is a directory"):
        load_config(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot be read: Not a directory"):
        load_config(tmp_path / "file" / "site.toml")


def test_unreadable_config_is_a_clear_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked.toml"
    locked.write_text("[server]\nport = 9000\n")
    locked.chmod(0)
    if os.access(locked, os.R_OK):
        pytest.skip("running as root: file permissions do not stop reading")
    with pytest.raises(ConfigError, match="cannot be read: Permission denied"):
        load_config(locked)


def test_overrides_are_checked_like_the_file() -> None:
    """`serve --port 99999` goes through Config.replace and must meet the rule the file's port meets."""
    with pytest.raises(ConfigError, match="server.port"):
        load_config().replace(server={"port": 99999})
    assert load_config().replace(server={"port": 9000}).server.port == 9000


def test_slots_from_grid_roi_and_whole_frame() -> None:
    config = parse_config(
        {
            "cameras": {
                "g": {"grid": {"rows": 2, "cols": 3, "roi": [10, 20, 300, 200]}},
                "s": {"slots": [[0, 0, 5, 5], [5, 5, 5, 5]]},
                "w": {},
            }
        }
    )
    grid = slot_boxes(config.cameras["g"], 640, 480)
    assert len(grid) == 6
    assert grid[0] == (10, 20, 100, 100) and grid[-1] == (210, 120, 100, 100)
    assert slot_boxes(config.cameras["s"], 10, 10) == ((0, 0, 5, 5), (5, 5, 5, 5))
    assert slot_boxes(config.cameras["w"], 64, 48) == ((0, 0, 64, 48),)
    with pytest.raises(ConfigError, match="Camera 's' slot 1"):
        slot_boxes(config.cameras["s"], 8, 8)


def test_replace_changes_one_setting() -> None:
    config = Config().replace(cache={"enabled": False})
    assert config.cache.enabled is False
    assert config.cache.max_distance == Config().cache.max_distance
