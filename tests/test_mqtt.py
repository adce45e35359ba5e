"""MQTT against a real Mosquitto broker (Debian's `mosquitto`, started on a free loopback port per test).

The service publishes retained per-slot state and events; while the broker is down it keeps answering frames and
holds the messages in its outbox, and delivers them when the broker is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
from conftest import colour_config, jpeg
from shelfframes import GRID, shelf

from shelfsense.service.app import create_app

FULL = ["red", "green", "blue", "red", "green", "blue", "red", "green"]


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto process on 127.0.0.1:port that can be stopped and started again with its saved sessions."""

    def __init__(self, binary: str, folder: Path, port: int) -> None:
        self.binary, self.port = binary, port
        self.conf = folder / "mosquitto.conf"
        self.log = folder / "mosquitto.log"
        folder.mkdir(exist_ok=True)
        self.conf.write_text(
            # Started as root, mosquitto drops to the user named here: keep it ours, so it can write in tmp_path.
            f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nlog_dest file {self.log}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([self.binary, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            if self.process.poll() is not None:
                break
            subprocess.run(["sleep", "0.05"], check=False)
        raise AssertionError(f"mosquitto did not start: {self.log.read_text() if self.log.exists() else ''}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # saves its sessions (persistence true)
            self.process.wait(10)
        self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = find_mosquitto()
    if binary is None:
        reason = "mosquitto is not installed (apt-get install -y mosquitto; .ci/run installs it)"
        if os.environ.get("SHELFSENSE_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    b = Broker(binary, tmp_path / "broker", free_port())
    yield b
    b.stop()


def mqtt_config(tmp_path: Path, port: int):
    config = colour_config(tmp_path, {"shelf-1": GRID})
    return config.replace(mqtt={"host": "127.0.0.1", "port": port, "reconnect_s": 0.2, "client_id": "shelfsense-test"})


async def post_all(server, frames: list[list[str | None]]) -> None:
    async with aiohttp.ClientSession() as session:
        for i, slots in enumerate(frames):
            url = server.make_url("/v1/frames/shelf-1")
            async with session.post(url, data=jpeg(shelf(slots, seed=i)), headers={"Content-Type": "image/jpeg"}) as r:
                assert r.status == 200  # answered whether or not the broker is there


def take(slot: int) -> list[list[str | None]]:
    """Frames that confirm a full shelf, then slot `slot` emptied: one product_removed event."""
    return [FULL] * 3 + [[None if i == slot else s for i, s in enumerate(FULL)]] * 4


async def collect(client: aiomqtt.Client, until) -> dict[str, list]:
    """Messages by topic until `until(messages)` holds (10 s at most)."""
    got: dict[str, list] = {}
    async with asyncio.timeout(10):
        async for m in client.messages:
            payload = m.payload.decode()
            got.setdefault(str(m.topic), []).append(json.loads(payload) if payload.startswith("{") else payload)
            if until(got):
                return got
    return got


@contextlib.asynccontextmanager
async def subscriber(port: int, **kw) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", port, **kw) as client:
        await client.subscribe("shelfsense/#", qos=1)
        yield client


async def test_events_and_retained_slot_states_reach_the_broker(aiohttp_server, broker: Broker, tmp_path) -> None:
    broker.start()
    server = await aiohttp_server(create_app(mqtt_config(tmp_path, broker.port)))
    async with subscriber(broker.port) as client:
        await post_all(server, take(2))
        got = await collect(
            client, lambda g: "shelfsense/shelf-1/events" in g and len(g.get("shelfsense/shelf-1/2/state", [])) == 2
        )
    (event,) = got["shelfsense/events"]
    assert (event["type"], event["camera"], event["slot"], event["before"]["label"]) == (
        "product_removed",
        "shelf-1",
        2,
        "blue",
    )
    assert got["shelfsense/shelf-1/events"] == [event]
    assert [m["state"] for m in got["shelfsense/shelf-1/2/state"]] == ["product", "empty"]
    assert "online" in got.get("shelfsense/status", [])

    # A subscriber joining later gets every slot's current state at once: they are retained.
    async with subscriber(broker.port) as late:
        states = await collect(late, lambda g: sum(t.endswith("/state") for t in g) == 8)
    assert {t: v[-1]["state"] for t, v in states.items() if t.endswith("/state")} == {
        f"shelfsense/shelf-1/{i}/state": "empty" if i == 2 else "product" for i in range(8)
    }
    assert states["shelfsense/shelf-1/2/state"][-1]["last_label"] == "blue"
    await server.close()  # before the broker fixture stops the broker


async def test_frames_are_served_while_the_broker_is_down_and_the_outbox_follows(
    aiohttp_server, broker: Broker, tmp_path
) -> None:
    # A subscriber with a persistent session, so the broker keeps its messages for it while it is away.
    broker.start()
    async with subscriber(broker.port, identifier="store-hq", clean_session=False):
        pass
    broker.stop()

    server = await aiohttp_server(create_app(mqtt_config(tmp_path, broker.port)))
    await post_all(server, take(5))
    async with aiohttp.ClientSession() as session:
        shelves = await (await session.get(server.make_url("/v1/shelves"))).json()
    assert shelves["mqtt"]["connected"] is False and shelves["mqtt"]["pending"] >= 9  # 8 states + 2 events
    assert [c["slots"][5]["state"] for c in shelves["cameras"]] == ["empty"]

    broker.start()
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(10):
            while (
                not (mqtt := (await (await session.get(server.make_url("/v1/shelves"))).json())["mqtt"])["connected"]
                or mqtt["pending"]
            ):
                await asyncio.sleep(0.05)
    assert mqtt["dropped"] == 0

    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="store-hq", clean_session=False) as client:
        got = await collect(client, lambda g: "shelfsense/events" in g and "shelfsense/shelf-1/5/state" in g)
    assert [(e["type"], e["slot"]) for e in got["shelfsense/events"]] == [("product_removed", 5)]
    assert got["shelfsense/shelf-1/5/state"][-1]["state"] == "empty"
    await server.close()
