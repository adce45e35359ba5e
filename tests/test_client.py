"""shelfsense.client: the one frame poster of the camera agent and replay."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from shelfsense.client import FramePoster, auth_headers, check_server_url, slot_tier
from shelfsense.types import Tier


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "https://shelf.local/", "http://[::1]:9"])
def test_http_urls_pass(url: str) -> None:
    assert check_server_url(url) == url


@pytest.mark.parametrize(
    ("url", "hint"),
    [("127.0.0.1:8080", "did you mean 'http://127.0.0.1:8080'"), ("ftp://x", ""), ("http://", ""), ("http://h:0", "")],
)
def test_other_urls_are_refused_naming_the_option(url: str, hint: str) -> None:
    with pytest.raises(ValueError, match="--url must be an http:// or https:// URL") as info:
        check_server_url(url)
    assert hint in str(info.value)
    with pytest.raises(ValueError):
        FramePoster(url)


def test_bearer_header_only_with_a_token() -> None:
    assert auth_headers("") == {}
    assert auth_headers("s3cret") == {"Authorization": "Bearer s3cret"}


def test_slot_tier_reads_the_answer_vocabulary() -> None:
    assert slot_tier({"cache": "memory"}) is Tier.MEMORY and slot_tier({"cache": "coalesced"}) is Tier.COALESCED
    assert slot_tier({"cache": "warp"}) is None and slot_tier({}) is None


async def test_an_answer_of_any_status_is_an_answer(aiohttp_server) -> None:
    seen: list[tuple[str, str | None, str, bytes]] = []

    async def frames(request: web.Request) -> web.Response:
        seen.append(
            (
                request.match_info["camera"],
                request.headers.get("Authorization"),
                request.content_type,
                await request.read(),
            )
        )
        if request.match_info["camera"] == "busy":
            return web.json_response({"error": "overloaded"}, status=503, headers={"Retry-After": "2"})
        return web.json_response({"frame": 1, "slots": []})

    app = web.Application()
    app.router.add_post("/v1/frames/{camera}", frames)
    server = await aiohttp_server(app)
    async with FramePoster(str(server.make_url("/")), token="tok", timeout_s=5) as poster:
        ok = await poster.post("cam-1", b"jpeg", "image/jpeg")
        busy = await poster.post("busy", b"png", "image/png")
    assert seen == [("cam-1", "Bearer tok", "image/jpeg", b"jpeg"), ("busy", "Bearer tok", "image/png", b"png")]
    assert (ok.status, ok.failure, ok.retry_after) == (200, None, None) and b'"frame": 1' in ok.body
    assert (busy.status, busy.failure, busy.retry_after) == (503, None, 2.0) and ok.ms > 0


async def test_no_server_is_a_connect_failure_not_an_exception() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    async with FramePoster(f"http://127.0.0.1:{port}", timeout_s=5) as poster:
        answer = await poster.post("cam-1", b"x", "image/jpeg")
    assert (answer.status, answer.failure, answer.body) == (0, "connect", b"")
    assert answer.exception is not None


async def test_post_outside_async_with_says_so() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await FramePoster("http://127.0.0.1:9").post("cam", b"", "image/jpeg")
