"""The portal in process over fakeredis: a platform (admin key) that makes accounts and
portal links, and browsers-without-a-browser (httpx clients keeping cookies) that open them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Config
from tests.conftest import FIXED_NOW, MakeClient

ADMIN = "admin-key-0123456789abcdef"
PORTAL_SECRET = "portal-secret-0123456789abcdef0123456789"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


class Clock:
    """A clock the test moves: `clock.advance(minutes=11)`."""

    def __init__(self, now: datetime = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Visitor:
    """A browser's part in it: one cookie jar, and the CSRF token of the last page seen."""

    http: httpx.AsyncClient
    csrf: str = ""

    async def get(self, path: str, **params: Any) -> httpx.Response:
        response = await self.http.get(path, params=params or None)
        if found := CSRF.search(response.text):
            self.csrf = found[1]
        return response

    async def post(self, path: str, data: dict[str, Any] | None = None) -> httpx.Response:
        """A form as the page sends it, with its CSRF token (pass csrf=None to leave it out)."""
        fields = {"csrf": self.csrf, **(data or {})}
        return await self.http.post(path, data={k: v for k, v in fields.items() if v is not None})


@dataclass
class Portal:
    api: httpx.AsyncClient  # no key of its own: pass headers
    clock: Clock
    make: Callable[[], Any]
    redis: Redis  # the fake one behind the app

    async def account(self, name: str = "Acme") -> str:
        response = await self.api.post("/api/accounts", json={"name": name}, headers=admin())
        assert response.status_code == 201, response.text
        account_id: str = response.json()["id"]
        return account_id

    async def link(self, account_id: str) -> str:
        response = await self.api.post(f"/api/accounts/{account_id}/portal-links", headers=admin())
        assert response.status_code == 201, response.text
        url: str = response.json()["url"]
        return url

    async def visitor(self, account_id: str | None = None) -> Visitor:
        """A new browser; signed in to `account_id`'s portal when given."""
        visitor = Visitor(await self.make())
        if account_id is not None:
            response = await visitor.http.get(await self.link(account_id))
            assert response.status_code == 303, response.text
            await visitor.get("/portal/")
        return visitor

    async def webhook(self, account_id: str, url: str = "https://hooks.example.com/in") -> int:
        response = await self.api.post(
            "/api/webhooks/manage",
            json={"url": url, "events": "*", "secret": "s3cret-s3cret"},
            headers={**admin(), "X-Account-Id": account_id},
        )
        assert response.status_code == 201, response.text
        webhook_id: int = response.json()["id"]
        return webhook_id


@pytest.fixture
def portal_config(make_config: Callable[..., Config]) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        settings: dict[str, Any] = {
            "admin_api_keys": (ADMIN,),
            "portal_secret": PORTAL_SECRET,
            "allow_unsigned_inbound": True,
        }
        return make_config(**{**settings, **overrides})

    return make


@pytest.fixture
async def make_portal(
    make_client: MakeClient, portal_config: Callable[..., Config], fake_redis: Redis
) -> Callable[..., Any]:
    async def make(**overrides: Any) -> Portal:
        config, clock = portal_config(**overrides), Clock()

        async def client() -> httpx.AsyncClient:
            return await make_client(config, clock=clock, auth=False)

        return Portal(await client(), clock, client, fake_redis)

    return make


@pytest.fixture
async def portal(make_portal: Callable[..., Any]) -> Portal:
    made: Portal = await make_portal()
    return made
