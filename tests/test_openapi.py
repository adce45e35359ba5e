"""The OpenAPI description is served and kept true: a bounded schemathesis run against the live service finds no
5xx and no answer outside the schema (status codes, content types, bodies)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from conftest import FIXTURE_MODELS
from hypothesis import HealthCheck, settings

from shelfsense.service.openapi import openapi

schema = schemathesis.openapi.from_dict(openapi())


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `shelfsense serve` on the tiny fixture model, one camera with a token and one without."""
    tmp = tmp_path_factory.mktemp("openapi")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp / "site.toml"
    config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[model]\npath = "{FIXTURE_MODELS / "colour_u8_128.tflite"}"\nthreads = 1\n'
        f'[cache]\ndisk_path = "cache"\n[telemetry]\nsysfs_root = "{tmp / "none"}"\nvcgencmd = "{tmp / "none"}"\n'
        '[cameras.cam]\ngrid = { rows = 1, cols = 2 }\n[cameras.locked]\ntoken = "t0ken"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "shelfsense.cli", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "SHELFSENSE_CONFIG"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_the_description_is_served(base_url: str) -> None:
    served = requests.get(base_url + "/openapi.json", timeout=10).json()
    assert served == openapi() and served["openapi"].startswith("3.1")
    assert set(served["paths"]) >= {"/v1/frames/{camera}", "/v1/stats", "/metrics", "/healthz", "/readyz"}


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_live_service_keeps_to_its_description(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url)


def test_schemathesis_can_fail(base_url: str) -> None:
    """The check is not vacuous: an answer the description does not allow is reported."""
    wrong = openapi()
    wrong["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "object",
        "required": ["no_such_key"],
    }
    operation = schemathesis.openapi.from_dict(wrong)["/healthz"]["GET"]
    with pytest.raises(BaseExceptionGroup) as failures:
        operation.Case().call_and_validate(base_url=base_url)
    assert "no_such_key" in str(failures.value.exceptions[0])
