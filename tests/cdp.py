"""Drive a real headless Chromium over the DevTools protocol (CDP), with the aiohttp websocket client (test helper).

No new dependency: aiohttp is already a runtime dependency, and Chromium is the
Debian package (`apt-get install -y chromium`). Browser tests should skip when find_chromium() returns None.

    async with launch_chromium() as browser:
        page = await browser.new_page(width=1280, height=800)
        await page.goto(f"{base_url}/?token=...")
        await page.wait_for("document.body.dataset.updated !== undefined")
        stats = await page.read_stats()                   # {"device.temperature_c": "52.3", ...}
        body = await page.response_json(stats.updated)    # the exact /v1/stats JSON the page rendered
        png = await page.screenshot(path)
        assert page.failed_requests == [] and page.js_errors == []

What it records per page, from the moment the page is created:
  - failed_requests: Network.loadingFailed (connection refused, aborted, blocked) and every response >= 400
  - js_errors: uncaught exceptions (Runtime.exceptionThrown) and console.error calls
  - stats responses: the bodies of the page's own `v1/stats` polls (Network.getResponseBody), so a test
    compares the DOM with the very JSON it was rendered from instead of racing a second request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Flags for a quiet, reproducible browser: no sandbox (CI containers run as root), no GPU, no calls home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


class CDPError(RuntimeError):
    """A DevTools command failed, the page threw, or the browser did not start."""


def find_chromium() -> str | None:
    """Path of an installed Chromium/Chrome, or None (tests skip on None)."""
    override = os.environ.get("SHELFSENSE_CHROMIUM")
    if override:
        return shutil.which(override)
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class StatsSnapshot:
    """Every [data-stat] element of the dashboard: path -> raw data-value, read in one evaluation."""

    updated: str | None
    values: dict[str, str]
    texts: dict[str, str]


@dataclass
class _Request:
    url: str
    method: str = "GET"
    status: int | None = None
    resource_type: str | None = None


@dataclass
class Page:
    """One tab, attached with a flat session; all commands for it carry its sessionId."""

    browser: Browser
    session_id: str
    target_id: str
    failed_requests: list[dict[str, Any]] = field(default_factory=list)
    js_errors: list[str] = field(default_factory=list)
    console: list[dict[str, Any]] = field(default_factory=list)
    _requests: dict[str, _Request] = field(default_factory=dict)
    _finished: list[str] = field(default_factory=list)
    _waiters: list[tuple[str, asyncio.Future[dict]]] = field(default_factory=list)

    async def send(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        return await self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    # ----- events -----

    def _on_event(self, method: str, params: dict) -> None:
        for waiter in list(self._waiters):
            name, future = waiter
            if name == method and not future.done():
                future.set_result(params)
                self._waiters.remove(waiter)
        if method == "Network.requestWillBeSent":
            req = params["request"]
            self._requests[params["requestId"]] = _Request(req["url"], req.get("method", "GET"))
        elif method == "Network.responseReceived":
            response = params["response"]
            req = self._requests.setdefault(params["requestId"], _Request(response["url"]))
            req.status = response["status"]
            req.resource_type = params.get("type")
            if response["status"] >= 400:
                self.failed_requests.append(
                    {"url": response["url"], "status": response["status"], "type": params.get("type")}
                )
        elif method == "Network.loadingFinished":
            self._finished.append(params["requestId"])
        elif method == "Network.loadingFailed":
            req = self._requests.get(params["requestId"])
            self.failed_requests.append(
                {
                    "url": req.url if req else None,
                    "error": params.get("errorText"),
                    "canceled": params.get("canceled", False),
                    "blocked": params.get("blockedReason"),
                    "type": params.get("type"),
                }
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "exception")
            self.js_errors.append(f"{text} at {details.get('url', '?')}:{details.get('lineNumber', '?')}")
        elif method == "Runtime.consoleAPICalled":
            args = [a.get("value", a.get("description", "")) for a in params.get("args", [])]
            entry = {"type": params["type"], "text": " ".join(str(a) for a in args)}
            self.console.append(entry)
            if params["type"] == "error":
                self.js_errors.append(f"console.error: {entry['text']}")

    def _expect(self, method: str) -> asyncio.Future[dict]:
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._waiters.append((method, future))
        return future

    # ----- actions -----

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event; raise on a navigation error (DNS, refused, ...)."""
        loaded = self._expect("Page.loadEventFired")
        result = await self.send("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")
        await asyncio.wait_for(loaded, timeout)

    async def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """Value of a JS expression (promises awaited), returned by value; raise if it throws."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"evaluating {expression!r} threw: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 15.0, interval: float = 0.1) -> Any:
        """Poll a JS expression until it is truthy; return its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise CDPError(f"timed out after {timeout} s waiting for {expression!r} (last: {value!r})")
            await asyncio.sleep(interval)

    async def wait_for_update(self, after: str | None = None, timeout: float = 15.0) -> str:
        """Wait until the dashboard has rendered a poll (body[data-updated]) newer than `after`."""
        prev = json.dumps(after)
        expression = (
            "(() => { const u = document.body.dataset.updated; "
            f"return u !== undefined && u !== {prev} ? u : null; }})()"
        )
        return await self.wait_for(expression, timeout=timeout)

    async def read_stats(self) -> StatsSnapshot:
        """All [data-stat] elements and body[data-updated], read atomically in one evaluation."""
        data = await self.evaluate(
            """(() => {
                const values = {}, texts = {};
                for (const el of document.querySelectorAll('[data-stat]')) {
                    values[el.dataset.stat] = el.dataset.value;
                    texts[el.dataset.stat] = el.textContent.trim();
                }
                return {updated: document.body.dataset.updated ?? null, values, texts};
            })()"""
        )
        return StatsSnapshot(updated=data["updated"], values=data["values"], texts=data["texts"])

    async def response_bodies(self, url_suffix: str = "v1/stats") -> list[str]:
        """Bodies of finished responses whose URL path ends with url_suffix (query ignored), oldest first."""
        bodies = []
        for request_id in list(self._finished):
            req = self._requests.get(request_id)
            if req is None or req.status != 200 or not req.url.split("?", 1)[0].endswith(url_suffix):
                continue
            try:
                result = await self.send("Network.getResponseBody", {"requestId": request_id})
            except CDPError:
                continue  # evicted from the browser's buffer; older polls do not matter
            body = result["body"]
            if result.get("base64Encoded"):
                body = base64.b64decode(body).decode()
            bodies.append(body)
        return bodies

    async def response_json(self, uptime: str | None, url_suffix: str = "v1/stats") -> dict:
        """The stats JSON whose uptime_s the page reported in body[data-updated] (String(uptime_s))."""
        for body in reversed(await self.response_bodies(url_suffix)):
            data = json.loads(body)
            if uptime is not None and _js_string(data.get("uptime_s")) == uptime:
                return data
        raise CDPError(f"no {url_suffix} response with uptime_s == {uptime}")

    async def set_viewport(self, width: int, height: int, scale: float = 1.0) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": False},
        )

    async def screenshot(self, path: str | Path | None = None, full_page: bool = False) -> bytes:
        """PNG of the viewport (or the whole page); written to path when given."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
            params["captureBeyondViewport"] = True
        result = await self.send("Page.captureScreenshot", params)
        png = base64.b64decode(result["data"])
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(png)
        return png

    async def close(self) -> None:
        with contextlib.suppress(CDPError, TimeoutError):
            await self.browser.send("Target.closeTarget", {"targetId": self.target_id}, timeout=5)


class Browser:
    """A running Chromium and one websocket to its browser target; pages are flat sessions on it."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        ws: aiohttp.ClientWebSocketResponse,
        http: aiohttp.ClientSession,
        log_path: Path,
    ) -> None:
        self.process = process
        self.log_path = log_path
        self._ws = ws
        self._http = http
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data:
                    future = self._pending.pop(data["id"], None)
                    if future is not None and not future.done():
                        if "error" in data:
                            error = data["error"]
                            future.set_exception(CDPError(f"{error.get('message')} ({error})"))
                        else:
                            future.set_result(data.get("result", {}))
                elif (page := self._pages.get(data.get("sessionId", ""))) is not None:
                    page._on_event(data["method"], data.get("params", {}))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CDPError("browser connection closed"))
            self._pending.clear()

    async def send(
        self, method: str, params: dict | None = None, *, session_id: str | None = None, timeout: float = 30.0
    ) -> dict:
        if self._reader.done():
            raise CDPError(f"browser connection closed; chromium log: {self.log_path}")
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_str(json.dumps(message))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise CDPError(f"{method} got no answer within {timeout} s") from exc
        finally:
            self._pending.pop(msg_id, None)

    async def new_page(self, width: int = 1280, height: int = 800) -> Page:
        """A fresh tab with network, runtime and page events on, at the given viewport size."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"], target["targetId"])
        self._pages[page.session_id] = page
        for domain in ("Page", "Network", "Runtime"):
            await page.send(f"{domain}.enable")
        # The page polls its stats; never serve a poll from the HTTP cache.
        await page.send("Network.setCacheDisabled", {"cacheDisabled": True})
        await page.set_viewport(width, height)
        return page

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send("Browser.close", timeout=5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()
        await self._http.close()


@contextlib.asynccontextmanager
async def launch_chromium(
    executable: str | None = None, extra_args: tuple[str, ...] = (), startup_timeout: float = 20.0
) -> AsyncIterator[Browser]:
    """Start headless Chromium in its own process group and a throwaway profile; always cleaned up."""
    executable = executable or find_chromium()
    if executable is None:
        raise CDPError("no chromium found; install it with `apt-get install -y chromium`")
    with tempfile.TemporaryDirectory(prefix="shelfsense-chromium-") as tmp:
        profile = Path(tmp) / "profile"
        log_path = Path(tmp) / "chromium.log"
        with open(log_path, "wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                *extra_args,
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                # Own process group, so cleanup reaches the renderer and GPU children and nothing else.
                start_new_session=True,
            )
        browser: Browser | None = None
        try:
            ws_url = await _devtools_url(profile, process, log_path, startup_timeout)
            http = aiohttp.ClientSession()
            try:
                ws = await http.ws_connect(ws_url, max_msg_size=0)  # screenshots exceed the 4 MiB default
            except BaseException:
                await http.close()
                raise
            browser = Browser(process, ws, http, log_path)
            yield browser
        finally:
            if browser is not None:
                await browser.close()
            await _stop(process)


async def _devtools_url(profile: Path, process: asyncio.subprocess.Process, log_path: Path, timeout: float) -> str:
    # Chromium writes "<port>\n<browser ws path>" here once it listens: no stderr parsing, no port races.
    port_file = profile / "DevToolsActivePort"
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if process.returncode is not None:
            break
        with contextlib.suppress(OSError):
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    log = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
    raise CDPError(f"chromium did not open its DevTools port (exit code {process.returncode}):\n{log}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
    # Signal our own process group only (its id is the browser's pid): stray renderers, never anyone else's.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
    if process.returncode is None:
        await process.wait()


def _js_string(value: Any) -> str:
    """What JS String(value) gives for a JSON number/null/bool, to match data-value / data-updated."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value) if not isinstance(value, str) else value


def lookup(stats: dict, path: str) -> Any:
    """Value at a dotted data-stat path; keys may themselves contain dots (camera ids), so match greedily."""
    parts = path.split(".")
    node: Any = stats
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            raise KeyError(path)
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node = node[key]
                i = j
                break
        else:
            raise KeyError(path)
    return node


def mismatches(snapshot: StatsSnapshot, stats: dict, same: Callable[[str, Any], bool] | None = None) -> list[str]:
    """data-stat values that differ from the JSON they were rendered from; [] when the page is right."""

    def default_same(raw: str, expected: Any) -> bool:
        if expected is None:
            return raw == "null"
        if isinstance(expected, (bool, dict, list)):
            return json.loads(raw) == expected
        if isinstance(expected, (int, float)):
            return raw != "null" and float(raw) == float(expected)
        return raw == str(expected)

    same = same or default_same
    problems = []
    for path, raw in snapshot.values.items():
        try:
            expected = lookup(stats, path)
        except KeyError:
            problems.append(f"{path}: on the page but not in the stats JSON")
            continue
        if raw is None or not same(raw, expected):
            problems.append(f"{path}: page has {raw!r}, stats have {expected!r}")
    return problems
