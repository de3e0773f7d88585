"""Headless Chromium for the portal's browser tests: the system's (devtools.browser finds it;
`make test` installs it when it can), driven by Playwright. Without one the tests skip, and
under CI=true they fail instead."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn
from starlette.applications import Starlette

from devtools.browser import chromium_path
from devtools.redis_server import free_port
from service.http.server import HttpProtocol

if TYPE_CHECKING:
    from playwright.async_api import Browser

# As the machine's own probe starts it: no sandbox for root, and none of the background
# connections a closed network would refuse at every start.
ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
# Where the run's screenshots go: docs/portal/ with `make screenshots`, else the test's tmp.
SCREENSHOTS = "PORTAL_SCREENSHOTS"


def unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run the portal's browser tests")
    pytest.skip(f"{why} (make test installs Debian's chromium when run as root)")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        unavailable("no Chromium found (Debian package chromium, or CHROMIUM=…)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[dev]')")
    args = [*ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[str]:
    """The app on a real port, as the Procfile serves it (uvicorn with our protocol), on
    this event loop; its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=HttpProtocol,
        lifespan="on",
        log_config=None,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # it failed to start: say why
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def screenshot_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get(SCREENSHOTS)
    path = Path(chosen) if chosen else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path
