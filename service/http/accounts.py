"""The operators' accounts API: /api/accounts and each account's API keys (admin keys only)."""

from __future__ import annotations

import logging

from msgspec import UNSET
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import logs
from service.core.accounts import DEFAULT_ACCOUNT, is_account_id, is_key_id
from service.core.errors import Conflict, NotFound, ValidationFailed
from service.core.ids import format_timestamp
from service.core.models import (
    ACCOUNT_CREATE_DECODER,
    ACCOUNT_UPDATE_DECODER,
    Account,
    AccountList,
    ApiKey,
    ApiKeyList,
)
from service.http.auth import admin_only
from service.http.idempotency import idempotent
from service.http.requests import read_json
from service.http.responses import json_response, page_response
from service.http.state import app_state
from service.http.webhooks import query_int
from service.storage.accounts import StoredAccount

logger = logging.getLogger("mailhooks.accounts")

MAX_PAGE = 1000
DEFAULT_PAGE = 100


def public(account: StoredAccount) -> Account:
    return Account(
        id=account.id,
        name=account.name,
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def path_account(request: Request) -> str:
    account_id: str = request.path_params["account_id"]
    if not is_account_id(account_id):
        raise NotFound(f"account {account_id} does not exist")
    return account_id


async def existing_account(request: Request) -> StoredAccount:
    account_id = path_account(request)
    account = await app_state(request).accounts.get(account_id)
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return account


@admin_only
@idempotent
async def create_account(request: Request) -> Response:
    state = app_state(request)
    body = await read_json(request, ACCOUNT_CREATE_DECODER, state.config, state.deadlines)
    account = await state.accounts.create_new(body.name, now=state.clock())
    logger.info(
        "account %s created", account.id, extra=logs.ids(request.headers, account_id=account.id)
    )
    location = {"Location": str(request.url_for("account", account_id=account.id).path)}
    return json_response(public(account), status=201, headers=location)


@admin_only
async def list_accounts(request: Request) -> Response:
    limit = query_int(request, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)
    after = request.query_params.get("after") or None
    if after is not None and not is_account_id(after):
        raise ValidationFailed("after must be an account id (acc_…)", field="after")
    found, next_after = await app_state(request).accounts.list(after=after, limit=limit)
    body = AccountList(accounts=[public(a) for a in found])
    return page_response(request, body, cursor="after", after=next_after)


@admin_only
async def get_account(request: Request) -> Response:
    return json_response(public(await existing_account(request)))


@admin_only
async def update_account(request: Request) -> Response:
    state = app_state(request)
    account_id = path_account(request)
    body = await read_json(request, ACCOUNT_UPDATE_DECODER, state.config, state.deadlines)
    account = await state.accounts.get(account_id)
    if account is not None and body.name is not UNSET:
        account = await state.accounts.rename(
            account_id, body.name, now=format_timestamp(state.clock())
        )
    if account is None:
        raise NotFound(f"account {account_id} does not exist")
    return json_response(public(account))


@admin_only
async def delete_account(request: Request) -> Response:
    """Keys first (refused at once), then webhooks with their deliveries, then email
    registrations and the account. Marked as being deleted from the first step: a crash
    part way leaves it gone for routing and reads, and a repeated DELETE finishes."""
    state = app_state(request)
    account_id = path_account(request)
    if account_id == DEFAULT_ACCOUNT and state.config.api_keys:
        raise Conflict("the default account serves API_KEYS: unset API_KEYS to delete it")
    if not await state.accounts.start_delete(account_id):
        raise NotFound(f"account {account_id} does not exist")
    for key in await state.accounts.keys(account_id):
        await state.accounts.revoke(account_id, key.id)
    for webhook_id in await state.webhooks.ids(account_id):
        await state.webhooks.delete(webhook_id, account_id)
        await state.deliveries.forget_webhook(webhook_id)
    await state.accounts.finish_delete(account_id)
    logger.info(
        "account %s deleted", account_id, extra=logs.ids(request.headers, account_id=account_id)
    )
    return Response(status_code=204)


@admin_only
@idempotent
async def create_key(request: Request) -> Response:
    state = app_state(request)
    account = await existing_account(request)
    created = await state.accounts.issue_key(account.id, now=state.clock())
    logger.info(  # never the key
        "API key %s created for %s",
        created.id,
        account.id,
        extra=logs.ids(request.headers, account_id=account.id),
    )
    return json_response(created, status=201)


@admin_only
async def list_keys(request: Request) -> Response:
    account = await existing_account(request)
    found = await app_state(request).accounts.keys(account.id)
    body = ApiKeyList(
        keys=[
            ApiKey(id=k.id, prefix=k.prefix, created_at=k.created_at, last_used_at=k.last_used_at)
            for k in found
        ]
    )
    return json_response(body)


@admin_only
async def delete_key(request: Request) -> Response:
    account = await existing_account(request)
    key_id: str = request.path_params["key_id"]
    if not is_key_id(key_id) or not await app_state(request).accounts.revoke(account.id, key_id):
        raise NotFound(f"key {key_id} does not exist for account {account.id}")
    logger.info(
        "API key %s of %s revoked",
        key_id,
        account.id,
        extra=logs.ids(request.headers, account_id=account.id),
    )
    return Response(status_code=204)


ONE = "/api/accounts/{account_id}"
routes = [
    Route("/api/accounts", list_accounts, methods=["GET"]),
    Route("/api/accounts", create_account, methods=["POST"]),
    Route(ONE, get_account, methods=["GET"], name="account"),
    Route(ONE, update_account, methods=["PATCH"]),
    Route(ONE, delete_account, methods=["DELETE"]),
    Route(ONE + "/keys", list_keys, methods=["GET"]),
    Route(ONE + "/keys", create_key, methods=["POST"]),
    Route(ONE + "/keys/{key_id}", delete_key, methods=["DELETE"]),
]
