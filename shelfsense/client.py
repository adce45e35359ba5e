"""The one HTTP frame poster: the camera agent and replay post frames to a ShelfSense server through it.

One place builds the `Authorization: Bearer` header, checks the server URL before anything is sent, and
maps aiohttp's failures to the few kinds a caller acts on:

    connect        the server did not accept the connection (down, restarting, wrong address)
    disconnected   the connection broke during the request
    timeout        no answer within the request timeout
    client         anything else aiohttp refused (a malformed answer, a redirect loop...)

An answer of any status is an answer, not a failure: the caller decides what a 4xx or a 503 means to it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from shelfsense.service.thermal import NEXT_FRAME_HEADER
from shelfsense.types import Tier

__all__ = ["CONNECTION_FAILURES", "Answer", "FramePoster", "auth_headers", "check_server_url", "slot_tier"]

# The failures a server restart or a network blip causes (`client` is not one of them).
CONNECTION_FAILURES = frozenset({"connect", "disconnected", "timeout"})


def check_server_url(url: str) -> str:
    """`url` when it is an http(s) URL naming a host, else ValueError saying what --url needs.

    aiohttp refuses anything else only at the first request, which a retrying sender would count as one
    more failed post, forever.
    """
    parts = urlsplit(str(url))
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number, or out of range
        port_ok = False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        hint = f" (did you mean 'http://{url}'?)" if "://" not in str(url) and url else ""
        raise ValueError(f"--url must be an http:// or https:// URL, got {str(url)!r}{hint}")
    return url


def auth_headers(token: str) -> dict[str, str]:
    """The camera's bearer token as a request header; none without a token."""
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass(frozen=True, slots=True)
class Answer:
    """What one POST came to: an answer (any status) or the kind of failure that left none."""

    status: int  # the HTTP status; 0 when no answer came
    body: bytes
    failure: str | None  # connect / disconnected / timeout / client; None when an answer came
    retry_after: float | None  # the answer's Retry-After in seconds, when it gave a number
    ms: float  # wall time from sending to the whole answer read
    exception: BaseException | None = None  # what aiohttp raised, for a debug log line
    # The server's request to wait this long before the camera's next frame (it runs hot); 0 when none.
    next_frame_after_ms: int = 0


class FramePoster:
    """POSTs frames to `/v1/frames/<camera>` of one server over one aiohttp session (`async with` it)."""

    def __init__(self, url: str, *, token: str = "", timeout_s: float = 10.0, limit: int | None = None) -> None:
        self.base = check_server_url(url).rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.limit = limit  # connections at most; None: aiohttp's default
        self._session: aiohttp.ClientSession | None = None

    def frame_url(self, camera: str) -> str:
        return f"{self.base}/v1/frames/{camera}"

    async def __aenter__(self) -> FramePoster:
        connector = aiohttp.TCPConnector(limit=self.limit) if self.limit is not None else None
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), headers=auth_headers(self.token), connector=connector
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, camera: str, data: bytes, content_type: str) -> Answer:
        """POST one frame as `camera`; never raises for a network failure (see the module doc)."""
        if self._session is None:
            raise RuntimeError("FramePoster.post outside `async with`")
        t0 = time.perf_counter()
        try:
            headers = {"Content-Type": content_type}
            async with self._session.post(self.frame_url(camera), data=data, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
                retry_after = _seconds(resp.headers.get("Retry-After"))
                next_frame_after_ms = _milliseconds(resp.headers.get(NEXT_FRAME_HEADER))
        except aiohttp.ClientConnectorError as exc:
            return _failed("connect", exc, t0)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            return _failed("disconnected", exc, t0)
        except TimeoutError as exc:
            return _failed("timeout", exc, t0)
        except aiohttp.ClientError as exc:
            return _failed("client", exc, t0)
        return Answer(status, body, None, retry_after, _ms_since(t0), next_frame_after_ms=next_frame_after_ms)


def _failed(kind: str, exc: BaseException, t0: float) -> Answer:
    return Answer(0, b"", kind, None, _ms_since(t0), exc)


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None  # an HTTP-date Retry-After: the caller's backoff decides alone


def _milliseconds(value: str | None) -> int:
    try:
        return max(0, int(value)) if value else 0
    except ValueError:
        return 0  # not a number: the camera keeps its own pace rather than guess


def slot_tier(slot: dict[str, Any]) -> Tier | None:
    """The cache tier a slot of a frame answer names, None when it names none this client knows."""
    try:
        return Tier(slot.get("cache"))
    except ValueError:
        return None
