"""The [shelf] and [mqtt] sections and cameras.*.planogram: documented defaults and errors that name the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from shelfsense.config import BUNDLED_CONFIG, Config, load_config, parse_config
from shelfsense.errors import ConfigError
from shelfsense.shelfconfig import shelf_state_path


def test_bundled_config_documents_every_shelf_and_mqtt_default() -> None:
    bundled, defaults = load_config(), Config()
    raw = tomllib.loads(BUNDLED_CONFIG.read_text())
    for section in ("shelf", "mqtt"):
        assert getattr(bundled, section) == getattr(defaults, section), section
        assert set(raw[section]) == {f.name for f in dataclasses.fields(getattr(defaults, section))}, section


def test_state_lives_beside_the_disk_cache_unless_told(tmp_path: Path) -> None:
    config = parse_config({"cache": {"disk_path": "c/cache"}}, base_dir=tmp_path)
    assert shelf_state_path(config) == tmp_path / "c" / "shelf"
    assert shelf_state_path(config.replace(cache={"disk_path": None})) is None  # memory only
    config = parse_config({"shelf": {"state_path": "elsewhere"}}, base_dir=tmp_path)
    assert shelf_state_path(config) == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"shelf": {"confirm_frames": 0}}, "shelf.confirm_frames"),
        ({"shelf": {"unknown_below": 2}}, "shelf.unknown_below"),
        ({"shelf": {"history_s": 1, "history_step_s": 5}}, "shelf.history_s"),
        ({"mqtt": {"qos": 3}}, "mqtt.qos"),
        ({"mqtt": {"topic_prefix": "a/#"}}, "mqtt.topic_prefix"),
        ({"mqtt": {"colour": 1}}, "mqtt.colour"),
        ({"cache": {"reverify_s": -1}}, "cache.reverify_s"),
        ({"cameras": {"a": {"planogram": "Oatly"}}}, "cameras.a.planogram"),
        (
            {"cameras": {"a": {"grid": {"rows": 1, "cols": 2}, "width": 64, "height": 48, "planogram": ["x"]}}},
            "cameras.a.planogram' names 1 products for 2 slots",
        ),
    ],
)
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(data)
