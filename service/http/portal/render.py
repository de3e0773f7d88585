"""How portal pages are made and sent: the Jinja2 templates (package data, autoescaped) and
the security headers every /portal response carries (docs/portal.md#security)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Config
from service import __version__
from service.core.event_types import EVENT_TYPES, SUBSCRIBABLE_TYPES
from service.http.state import STATE_KEY, AppState

TEMPLATES = Environment(
    loader=PackageLoader("service.http.portal", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# event_types: email events (a test event's choices); subscribable_types: those and the
# operational events, which a webhook's form must offer, or saving it would drop them.
TEMPLATES.globals.update(
    event_types=EVENT_TYPES, subscribable_types=SUBSCRIBABLE_TYPES, version=__version__
)


Query = Mapping[str, object] | None


def url(request: Request, name: str, query: Query = None, **params: Any) -> str:
    """The path of a named route (`portal:webhook`), with `query` (None values left out)."""
    path = str(request.app.url_path_for(name, **params))
    pairs = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    return f"{path}?{urlencode(pairs)}" if pairs else path


def page(
    request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> Response:
    """A rendered page; never cached (it shows one account's data)."""

    def url_for(name: str, query: Query = None, **params: Any) -> str:
        return url(request, name, query, **params)

    html = TEMPLATES.get_template(template).render(
        {"account": None, "csrf": None, "notice": None, "section": None, **context, "url": url_for}
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def message(request: Request, status: int, title: str, text: str, **context: Any) -> Response:
    """A page that only says something: an error, an expired link, signed out."""
    return page(request, "message.html", {"title": title, "text": text, **context}, status=status)


def content_security_policy(config: Config) -> str:
    ancestors = " ".join(config.portal_frame_ancestors) or "'none'"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    )


def security_headers(config: Config) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-security-policy", content_security_policy(config).encode()),
        (b"x-content-type-options", b"nosniff"),
        # The login URL carries its token: never send a portal URL to another site.
        (b"referrer-policy", b"no-referrer"),
    ]
    if not config.portal_frame_ancestors:
        headers.append((b"x-frame-options", b"DENY"))  # for browsers without frame-ancestors
    return headers


class SecurityHeaders:
    """ASGI middleware of the /portal mount: every response under it, pages, assets and
    404s alike, gets the headers above."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: AppState = scope["state"][STATE_KEY]
        extra = security_headers(state.config)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
