"""The Pi deployment kit: deploy/shelfsense.service passes `systemd-analyze verify`, deploy/install.sh is
idempotent, keeps the site's config and writes one that loads. (.ci/pi/stage runs install.sh for real, as root,
inside the emulated Pi OS userland and starts the service from it.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shelfsense.config import load_config

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "shelfsense.service"
INSTALL = ROOT / "deploy" / "install.sh"


def install(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_is_hardened_and_matches_the_install_layout() -> None:
    s = unit_settings()
    assert s["ExecStart"] == ["/opt/shelfsense/.venv/bin/shelfsense serve --config /etc/shelfsense.toml"]
    assert s["User"] == ["shelfsense"] and s["StateDirectory"] == ["shelfsense"]
    assert s["ProtectSystem"] == ["strict"] and s["Restart"] == ["on-failure"] and s["NoNewPrivileges"] == ["yes"]
    assert s["StandardOutput"] == s["StandardError"] == ["journal"]
    assert s["CapabilityBoundingSet"] == [""]  # no capabilities at all: port 8080 needs none


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    system_units = next((p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()), None)
    if analyze is None or system_units is None:
        reason = "systemd-analyze is not installed (apt-get install systemd; .ci/run installs it)"
        if os.environ.get("SHELFSENSE_REQUIRE_SYSTEMD") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    # An image of the installed system: the distribution's units, ours where install.sh puts it, and the
    # ExecStart program (verify checks that it exists and is executable).
    root = tmp_path / "root"
    shutil.copytree(system_units, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    install("--root", str(root), "--no-venv")
    program = root / "opt" / "shelfsense" / ".venv" / "bin" / "shelfsense"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    out = subprocess.run(
        [analyze, "verify", f"--root={root}", "shelfsense.service"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stderr.strip() == "", out.stdout + out.stderr
    program.unlink()  # and it does check: without the program, verify fails
    out = subprocess.run(
        [analyze, "verify", f"--root={root}", "shelfsense.service"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0 and "is not executable" in out.stderr


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    out = install("--dry-run", "--root", str(tmp_path / "root"))
    assert not (tmp_path / "root").exists()
    assert "would copy" in out.stdout and "would write" in out.stdout and "would install" in out.stdout
    assert "would create" in out.stdout  # the venv
    assert "dry run: " in out.stdout


def test_install_is_idempotent_and_keeps_the_site_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install("--root", str(root), "--no-venv")
    assert "done: " in first.stdout and "unchanged, nothing to do" not in first.stdout
    config = root / "etc" / "shelfsense.toml"
    unit = root / "etc" / "systemd" / "system" / "shelfsense.service"
    src = root / "opt" / "shelfsense" / "src"
    assert unit.read_bytes() == UNIT.read_bytes()
    model = Path("models") / "grocery_int8.tflite"
    assert (src / model).read_bytes() == (ROOT / model).read_bytes()
    assert (src / "config.toml").is_file() and not (src / ".git").exists()
    assert config.stat().st_mode & 0o777 == 0o640  # camera tokens go in here
    # the written config loads, and points at the installed model and the service's StateDirectory
    loaded = load_config(config)
    assert loaded.model.path == Path("/opt/shelfsense/src/models/grocery_int8.tflite")
    assert loaded.cache.disk_path == Path("/var/lib/shelfsense/cache")
    assert loaded.record.folder == Path("/var/lib/shelfsense/recordings")
    assert list(loaded.cameras) == ["shelf-1"]

    config.write_text(config.read_text() + "\n[cameras.aisle-3]\n")  # the site's own edit
    second = install("--root", str(root), "--no-venv")
    assert second.stdout.rstrip().endswith("done: unchanged, nothing to do"), second.stdout
    assert "[cameras.aisle-3]" in config.read_text()


def test_no_root_no_install() -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: the refusal is for other users")
    out = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "run it as root" in out.stderr


@pytest.mark.parametrize(("require", "code", "verdict"), [("", 0, "SKIPPED"), ("1", 1, "FAILED")])
def test_pi_stage_without_root_says_why_and_skips_or_fails(require: str, code: int, verdict: str) -> None:
    """Locally the emulated Pi OS stage skips when it cannot run; under SHELFSENSE_REQUIRE_PI=1 (CI) it fails."""
    command = ["bash", str(ROOT / ".ci" / "pi" / "stage")]
    if os.geteuid() == 0:  # as root it would run: drop to nobody, as a user without sudo would be
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {**os.environ, "SHELFSENSE_REQUIRE_PI": require}
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd="/")
    assert out.returncode == code, out.stdout + out.stderr
    assert "emulation impossible here: needs root" in out.stderr and verdict in out.stderr
