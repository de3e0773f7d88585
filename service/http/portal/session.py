"""Who is looking at the portal: a link opens a session (a cookie naming a session in Redis),
each page checks it, and each form carries the session's CSRF token (docs/portal.md).

    GET  /portal/login?token=…   a portal link: checked, used once, opens a session
    POST /portal/logout          ends it
    every other page             through `portal_page`: the session and its account, the
                                 form's CSRF token, the service's errors as HTML pages
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.core.errors import MailhooksError, UnsupportedMediaType, ValidationFailed
from service.core.ids import format_timestamp
from service.core.portal import InvalidLink, same_token, session_digest, verify_link
from service.http.portal.render import Query, message, page, url
from service.http.requests import media_type, read_body
from service.http.state import AppState, app_state
from service.storage.accounts import StoredAccount
from service.storage.portal import PortalSession

logger = logging.getLogger("mailhooks.portal")

COOKIE = "mh_portal"
COOKIE_PATH = "/portal"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 100
NOT_ENABLED = ("Portal not enabled", "This deployment has no portal: its PORTAL_SECRET is unset.")
ENDED = (
    "Session ended",
    "Your portal session has ended or was never opened. Open the portal again from your dashboard.",
)

ERROR_TITLES = {
    404: "Not found",
    409: "Not now",
    413: "Too large",
    415: "Not a form",
    422: "Not valid",
}


@dataclass
class Visit:
    """One request to a portal page, from a session of `account`; `form` is a POST's body."""

    request: Request
    state: AppState
    session: PortalSession
    account: StoredAccount
    form: dict[str, list[str]] = field(default_factory=dict)

    def value(self, name: str) -> str:
        return self.form.get(name, [""])[0]

    def values(self, name: str) -> list[str]:
        return self.form.get(name, [])

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        context = {"account": self.account, "csrf": self.session.csrf, **context}
        return page(self.request, template, context, status=status)

    def redirect(self, name: str, query: Query = None, **params: Any) -> Response:
        """See other (303): after a form, the page that shows its result."""
        return RedirectResponse(url(self.request, name, query, **params), status_code=303)


PortalEndpoint = Callable[[Visit], Awaitable[Response]]


def portal_page(endpoint: PortalEndpoint) -> Callable[[Request], Awaitable[Response]]:
    """A page of a session's account. Without a live session: 401; a POST without its
    session's CSRF token: 403; the service's errors (404 for another account's ids, as in
    the API) become pages with their status."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        state = app_state(request)
        if not state.config.portal_secret:
            return message(request, 501, *NOT_ENABLED)
        found = await current_session(request, state)
        if found is None:
            response = message(request, 401, *ENDED)
            response.delete_cookie(COOKIE, path=COOKIE_PATH)
            return response
        session, account = found
        visit = Visit(request, state, session, account)
        try:
            if request.method == "POST":
                visit.form = await read_form(request, state)
                if not same_token(session.csrf, visit.value("csrf")):
                    return visit.render(
                        "message.html",
                        status=403,
                        title="Form refused",
                        text="This form did not come from your portal session (or the session "
                        "changed since it was shown). Go back, reload the page and try again.",
                    )
            return await endpoint(visit)
        except MailhooksError as exc:
            title = ERROR_TITLES.get(exc.status, "Something went wrong")
            return visit.render("message.html", status=exc.status, title=title, text=exc.message)

    return guarded


async def current_session(
    request: Request, state: AppState
) -> tuple[PortalSession, StoredAccount] | None:
    """The request's session and its account, if both are still there."""
    session_id = request.cookies.get(COOKIE)
    if not session_id or len(session_id) > 100:
        return None
    session = await state.portal.session(session_digest(session_id))
    if session is None or session.expires_at <= int(state.clock().timestamp()):
        return None
    account = await state.accounts.get(session.account)  # a deleted account ends it
    return None if account is None else (session, account)


async def read_form(request: Request, state: AppState) -> dict[str, list[str]]:
    """A form's fields, read within MAX_BODY_BYTES and READ_TIMEOUT like any body."""
    if media_type(request) != FORM_TYPE:
        raise UnsupportedMediaType(f"a portal form is sent as {FORM_TYPE}")
    body = await read_body(request, state.config, state.deadlines)
    try:
        return parse_qs(
            body.decode(), keep_blank_values=True, strict_parsing=False,
            max_num_fields=MAX_FORM_FIELDS,
        )  # fmt: skip
    except (UnicodeDecodeError, ValueError):
        raise ValidationFailed("the form could not be read") from None


async def login(request: Request) -> Response:
    """A portal link: valid, unexpired, of an existing account and never opened before."""
    state = app_state(request)
    config = state.config
    if not config.portal_secret:
        return message(request, 501, *NOT_ENABLED)
    now = int(state.clock().timestamp())
    try:
        claims = verify_link(config.portal_secret, request.query_params.get("token", ""), now=now)
        if await state.accounts.get(claims.a) is None:
            raise InvalidLink("this portal link is not valid")
        if not await state.portal.use_link(claims.j, ttl_seconds=claims.e - now):
            raise InvalidLink("this portal link has been used already")
    except InvalidLink as exc:
        text = f"Sorry, {exc}. Open the portal again from your dashboard for a new link."
        return message(request, 403, "Link refused", text)
    session_id = secrets.token_urlsafe(32)
    session = PortalSession(
        account=claims.a,
        csrf=secrets.token_urlsafe(32),
        expires_at=now + config.portal_session_seconds,
    )
    await state.portal.open_session(
        session_digest(session_id),
        session,
        created_at=format_timestamp(state.clock()),
        ttl_seconds=config.portal_session_seconds,
    )
    logger.info("portal session opened for %s", claims.a)
    response = RedirectResponse(url(request, "portal:home"), status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=config.portal_session_seconds,
        path=COOKIE_PATH,
        # https as uvicorn sees it: X-Forwarded-Proto counts only from FORWARDED_ALLOW_IPS.
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )
    return response


@portal_page
async def logout(visit: Visit) -> Response:
    await visit.state.portal.close_session(session_digest(visit.request.cookies[COOKIE]))
    response = message(
        visit.request, 200, "Signed out", "You have left the portal. Open it again from your "
        "dashboard whenever you need it.",
    )  # fmt: skip
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response
