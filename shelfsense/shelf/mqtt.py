"""MQTT publisher: per-slot state (retained) and events to a broker, with reconnect and a bounded outbox.

Topics, under `mqtt.topic_prefix` (default `shelfsense`), in the layout Frigate and Home Assistant users know:

    shelfsense/status                    "online" (retained); "offline" by last will when the service goes away
    shelfsense/<camera>/<slot>/state     retained JSON {"state", "label", "score", "since", "expected", ...}
    shelfsense/events                    one JSON event per message (as GET /v1/events gives them)
    shelfsense/<camera>/events           the same events, per camera

Messages wait in an outbox of `mqtt.outbox` entries while the broker is away (the oldest are dropped beyond it,
and counted) and are sent in order when it is back; a message leaves the outbox only once the broker has it
(QoS 1), so a connection lost mid-send resends it. The frame path only appends to the outbox: a broker that is
down or slow never delays a frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiomqtt

from shelfsense.shelfconfig import MqttConfig

log = logging.getLogger(__name__)

__all__ = ["MqttPublisher"]


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool


class MqttPublisher:
    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.prefix = config.topic_prefix.rstrip("/")
        self._outbox: deque[_Message] = deque()
        self._wake = asyncio.Event()
        self.connected = False
        self.published = 0
        self.dropped = 0  # messages the full outbox let go
        self.last_error: str | None = None

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        self._outbox.append(_Message(f"{self.prefix}/{topic}", data, retain))
        while len(self._outbox) > self.config.outbox:
            self._outbox.popleft()
            self.dropped += 1
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._outbox)

    async def run(self) -> None:
        """Connect, drain the outbox, wait for more; on any broker error wait `reconnect_s` and connect again."""
        c = self.config
        will = aiomqtt.Will(f"{self.prefix}/status", b"offline", qos=1, retain=True)
        while True:
            try:
                async with aiomqtt.Client(
                    c.host,
                    c.port,
                    username=c.username or None,
                    password=c.password or None,
                    identifier=c.client_id,
                    will=will,
                    timeout=10,
                ) as client:
                    self.connected, self.last_error = True, None
                    log.info("MQTT connected to %s:%d", c.host, c.port)
                    await client.publish(f"{self.prefix}/status", b"online", qos=1, retain=True)
                    await self._drain(client)
            except aiomqtt.MqttError as exc:
                if self.connected or self.last_error is None:
                    log.warning(
                        "MQTT broker %s:%d unavailable (%s); retrying every %.0f s, %d message(s) waiting",
                        c.host,
                        c.port,
                        exc,
                        c.reconnect_s,
                        self.pending,
                    )
                self.connected, self.last_error = False, str(exc)
            await asyncio.sleep(c.reconnect_s)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Send the outbox in order; between messages, wait for more or for the connection to drop (MqttError)."""
        # Iterating the client's messages is how aiomqtt reports a lost connection to an otherwise idle client;
        # without it an idle publisher would only notice at its next publish, and say "connected" meanwhile.
        watch = asyncio.create_task(_until_disconnected(client))
        try:
            while True:
                while self._outbox:
                    m = self._outbox[0]
                    await client.publish(m.topic, m.payload, qos=self.config.qos, retain=m.retain)
                    if self._outbox and self._outbox[0] is m:  # still ours (not dropped by a full outbox meanwhile)
                        self._outbox.popleft()
                    self.published += 1
                self._wake.clear()
                wake = asyncio.create_task(self._wake.wait())
                await asyncio.wait({wake, watch}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                if watch.done():
                    watch.result()  # raises the MqttError
                    raise aiomqtt.MqttError("connection closed")
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await watch

    async def close(self, task: asyncio.Task) -> None:
        """Say "offline" (the last will only covers a lost connection), give the outbox a moment, stop the task."""
        self.publish("status", b"offline", retain=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                while self._outbox and self.connected:
                    await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def status(self) -> dict[str, Any]:
        c = self.config
        return {
            "broker": f"{c.host}:{c.port}",
            "connected": self.connected,
            "pending": self.pending,
            "published": self.published,
            "dropped": self.dropped,
            "error": self.last_error,
        }


async def _until_disconnected(client: aiomqtt.Client) -> None:
    async for _ in client.messages:  # nothing is subscribed: this only ends when the connection does
        pass
