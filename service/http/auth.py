"""Who is asking: operator (admin) keys, the default account's keys, and account keys.

    ADMIN_API_KEYS   operators: the accounts API; inside an account with X-Account-Id
    API_KEYS         the built-in default account (single-account mode, as before accounts)
    mh_…             an account's own key, from POST /api/accounts/{id}/keys

Configured keys are compared in constant time against every key, always. An account key is
looked up by its SHA-256 on every request, with no cache: a revoked key is refused by every
web process from its next request on.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from service.core.accounts import DEFAULT_ACCOUNT, api_key_digest, looks_like_account_key
from service.core.errors import AccountRequired, Forbidden, NotFound, Unauthorized
from service.core.ids import format_timestamp
from service.http.state import AppState, app_state

ACCOUNT_HEADER = "x-account-id"
# A key's last_used_at is written at most this often per web process: a busy key must not
# cost a write per request.
LAST_USED_RESOLUTION_SECONDS = 60

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: an operator or not, and the account it acts in (None for an
    operator acting in none)."""

    admin: bool
    account: str | None

    def scope(self) -> str:
        if self.account is None:
            raise AccountRequired(
                "an admin key acts inside an account only with X-Account-Id: acc_…"
            )
        return self.account


def key_is_valid(presented: str, keys: tuple[str, ...]) -> bool:
    """Constant time in the presented key: every configured key is compared, always."""
    presented_bytes = presented.encode()
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(presented_bytes, key.encode())
    return valid


def bearer_token(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    return token.strip()


async def authenticate(request: Request) -> Principal:
    state = app_state(request)
    token = bearer_token(request)
    config = state.config
    # Both lists are always compared, whichever matches: the time taken says nothing.
    admin = key_is_valid(token, config.admin_api_keys)
    default = key_is_valid(token, config.api_keys)
    if admin:
        return Principal(admin=True, account=await acted_in(request, state))
    if default:
        return Principal(admin=False, account=DEFAULT_ACCOUNT)
    if looks_like_account_key(token):
        digest = api_key_digest(token)
        key = await state.accounts.key_by_digest(digest)
        if key is not None:
            await note_use(state, digest)
            return Principal(admin=False, account=key.account)
    raise Unauthorized("invalid API key")


async def acted_in(request: Request, state: AppState) -> str | None:
    """The account an admin key acts in: X-Account-Id's, which must exist."""
    account = request.headers.get(ACCOUNT_HEADER, "").strip()
    if not account:
        return None
    if not await state.accounts.existing([account]):
        raise NotFound(f"account {account} does not exist")
    return account


async def note_use(state: AppState, digest: str) -> None:
    now = state.clock()
    minute = int(now.timestamp()) // LAST_USED_RESOLUTION_SECONDS
    if state.key_use.get(digest) == minute:
        return
    state.key_use[digest] = minute
    if len(state.key_use) > 10_000:  # a bound, not a cache: forgetting costs one write
        state.key_use.clear()
    await state.accounts.touch_key(digest, now=format_timestamp(now))


def in_account(endpoint: Callable[[Request, str], Awaitable[Response]]) -> Endpoint:
    """For routes that act inside one account: the endpoint gets that account's id."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        principal = await authenticate(request)
        return await endpoint(request, principal.scope())

    return guarded


def with_principal(endpoint: Callable[[Request, Principal], Awaitable[Response]]) -> Endpoint:
    """For routes whose answer depends on who asks (an operator may see every account)."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        return await endpoint(request, await authenticate(request))

    return guarded


def admin_only(endpoint: Endpoint) -> Endpoint:
    """For the operators' routes (the accounts API)."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        principal = await authenticate(request)
        if not principal.admin:
            raise Forbidden("this route needs an admin key (ADMIN_API_KEYS)")
        return await endpoint(request)

    return guarded


def operator_only(endpoint: Endpoint) -> Endpoint:
    """For what the whole deployment shows (/api/status): admin keys, and API_KEYS, whose
    holders run a single-account deployment; never another account's key."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        principal = await authenticate(request)
        if not (principal.admin or principal.account == DEFAULT_ACCOUNT):
            raise Forbidden("this route needs an admin key (ADMIN_API_KEYS) or one of API_KEYS")
        return await endpoint(request)

    return guarded
