"""First-party tracking through HTTP: links made by the API, followed as a mail client and a
scanner would; tampered and foreign tokens refused with nothing recorded; the opt-out link."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Config
from devtools.redis_server import free_port
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.tracking import PIXEL_GIF, Claims, Signer
from service.storage import keys
from tests.conftest import FIXED_NOW, MakeClient

pytestmark = pytest.mark.anyio

PUBLIC_URL = "https://t.example.com"
KEY = "tracking-key-0123456789abcdef0123456789"
OLD_KEY = "old-tracking-key-0123456789abcdef01234"
TARGET = "https://shop.example.com/spring?utm_source=email&id=7"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def tracking_config(make_config: Any, **overrides: Any) -> Config:
    settings: dict[str, Any] = {
        "public_url": PUBLIC_URL,
        "tracking_signing_keys": (KEY, OLD_KEY),
        **overrides,
    }
    config: Config = make_config(**settings)
    return config


def path(url: str) -> str:
    """A tracking URL as the test client requests it (its host is the test server)."""
    assert url.startswith(PUBLIC_URL + "/t/")
    return url.removeprefix(PUBLIC_URL)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(make_client: MakeClient, make_config: Any, clock: Clock) -> httpx.AsyncClient:
    return await make_client(tracking_config(make_config), clock=clock)


async def make_urls(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    sent = {"email_id": "msg_1", "recipient": "Alex@Example.com", "links": [TARGET], **body}
    response = await api.post("/api/tracking", json=sent)
    assert response.status_code == 200, response.text
    made: dict[str, Any] = response.json()
    return made


async def events(api: httpx.AsyncClient, type_: str | None = None) -> list[dict[str, Any]]:
    response = await api.get("/api/events", params={"type": type_} if type_ else {})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


async def nothing_recorded(redis: Redis) -> bool:
    return await redis.exists(keys.EVENTS_STREAM) == 0


class TestMakingUrls:
    async def test_the_urls_and_headers(self, api: httpx.AsyncClient) -> None:
        made = await make_urls(api, links=[TARGET, "https://example.com/b"])
        assert set(made) == {"open_url", "links", "unsubscribe_url", "headers"}
        assert made["open_url"].startswith(f"{PUBLIC_URL}/t/o/")
        assert made["unsubscribe_url"].startswith(f"{PUBLIC_URL}/t/u/")
        assert list(made["links"]) == [TARGET, "https://example.com/b"]
        assert all(url.startswith(f"{PUBLIC_URL}/t/c/") for url in made["links"].values())
        assert made["headers"] == {
            "List-Unsubscribe": f"<{made['unsubscribe_url']}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    async def test_links_are_optional(self, api: httpx.AsyncClient) -> None:
        made = await make_urls(api, links=[])
        assert made["links"] == {}

    async def test_the_token_names_the_callers_account(self, api: httpx.AsyncClient) -> None:
        made = await make_urls(api)
        token = made["links"][TARGET].rsplit("/", 1)[1]
        found = Signer([KEY]).verify(token, "c")
        assert found is not None
        assert found.claims == Claims(
            "c", DEFAULT_ACCOUNT, "msg_1", "Alex@Example.com", int(FIXED_NOW.timestamp()), TARGET
        )

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"links": ["javascript:alert(1)"]}, "links"),
            ({"links": ["/relative"]}, "links"),
            ({"recipient": "not an address"}, "recipient"),
            ({"email_id": ""}, "email_id"),
            ({"links": ["https://a.example/"] * 1001}, "links"),
            ({"extra": 1}, "extra"),
        ],
    )
    async def test_refused(self, api: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
        response = await api.post(
            "/api/tracking",
            json={"email_id": "msg_1", "recipient": "a@example.com", **body},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field

    async def test_needs_a_key(self, api: httpx.AsyncClient) -> None:
        response = await api.post(
            "/api/tracking",
            json={"email_id": "m", "recipient": "a@example.com"},
            headers={"Authorization": "Bearer wrong-key-0123456789"},
        )
        assert response.status_code == 401

    async def test_not_configured(self, make_client: MakeClient) -> None:
        api = await make_client()
        response = await api.post(
            "/api/tracking", json={"email_id": "m", "recipient": "a@example.com"}
        )
        assert response.status_code == 501
        assert response.json()["error"]["code"] == "not_enabled"
        assert "PUBLIC_URL" in response.json()["error"]["message"]
        assert (await api.get("/t/o/AQ")).status_code == 404


class TestOpen:
    async def test_a_mail_client_gets_the_pixel_and_an_open_is_recorded(
        self, api: httpx.AsyncClient, clock: Clock
    ) -> None:
        made = await make_urls(api)
        clock.advance(3600)
        response = await api.get(path(made["open_url"]), headers={"User-Agent": APPLE_MAIL})
        assert response.status_code == 200
        assert response.content == PIXEL_GIF
        assert response.headers["content-type"] == "image/gif"
        assert "no-store" in response.headers["cache-control"]
        assert "no-cache" in response.headers["cache-control"]
        assert response.headers["expires"] == "0"
        [event] = await events(api)
        assert event["type"] == "email.open"
        assert event["provider"] == "mailhooks"
        assert event["email_id"] == "msg_1"
        assert event["recipient"] == "Alex@Example.com"
        assert event["account_id"] == DEFAULT_ACCOUNT
        assert event["user_agent"] == APPLE_MAIL
        assert event["occurred_at"] == "2026-03-03T11:00:00Z"
        assert "machine" not in event

    async def test_a_second_open_is_an_open_but_not_within_the_same_second(
        self, api: httpx.AsyncClient, clock: Clock
    ) -> None:
        made = await make_urls(api)
        for _ in range(3):  # a client loading the image twice as it renders
            assert (await api.get(path(made["open_url"]))).status_code == 200
        clock.advance(1)
        assert (await api.get(path(made["open_url"]))).status_code == 200
        clock.advance(86400)
        assert (await api.get(path(made["open_url"]))).status_code == 200
        assert len(await events(api, "open")) == 3

    @pytest.mark.parametrize(
        ("agent", "machine"),
        [
            ("Mozilla/5.0", "apple_privacy"),
            ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com "
             "GoogleImageProxy)", "image_proxy"),
            ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
             "image_proxy"),
        ],
    )  # fmt: skip
    async def test_image_proxies_are_flagged_not_dropped(
        self, api: httpx.AsyncClient, agent: str, machine: str
    ) -> None:
        made = await make_urls(api)
        response = await api.get(path(made["open_url"]), headers={"User-Agent": agent})
        assert response.content == PIXEL_GIF
        [event] = await events(api)
        assert event["machine"] == machine

    async def test_head_is_a_prefetch(self, api: httpx.AsyncClient) -> None:
        made = await make_urls(api)
        response = await api.head(path(made["open_url"]), headers={"User-Agent": CHROME})
        assert response.status_code == 200
        [event] = await events(api)
        assert event["machine"] == "prefetch"


class TestClick:
    async def test_a_person_is_redirected_and_the_click_recorded(
        self, api: httpx.AsyncClient, clock: Clock
    ) -> None:
        made = await make_urls(api)
        clock.advance(90)
        response = await api.get(path(made["links"][TARGET]), headers={"User-Agent": CHROME})
        assert response.status_code == 302
        assert response.headers["location"] == TARGET
        assert "no-store" in response.headers["cache-control"]
        assert response.content == b""
        [event] = await events(api)
        assert event["type"] == "email.click"
        assert event["click"] == {"url": TARGET}
        assert event["user_agent"] == CHROME
        assert "machine" not in event

    async def test_a_scanner_reaches_the_target_and_is_flagged(
        self, api: httpx.AsyncClient
    ) -> None:
        made = await make_urls(api)
        response = await api.get(
            path(made["links"][TARGET]), headers={"User-Agent": "Barracuda Sentinel (EE)"}
        )
        assert response.headers["location"] == TARGET
        [event] = await events(api)
        assert event["machine"] == "scanner"

    async def test_a_click_within_seconds_of_sending_is_flagged(
        self, api: httpx.AsyncClient, clock: Clock
    ) -> None:
        made = await make_urls(api)
        clock.advance(2)
        response = await api.get(path(made["links"][TARGET]), headers={"User-Agent": CHROME})
        assert response.status_code == 302
        [event] = await events(api)
        assert event["machine"] == "early_click"

    async def test_data_centre_addresses(
        self, make_client: MakeClient, make_config: Any, clock: Clock
    ) -> None:
        api = await make_client(tracking_config(make_config), clock=clock)
        made = await make_urls(api)
        clock.advance(60)
        # httpx's test transport says the client is 127.0.0.1; no networks: not flagged.
        await api.get(path(made["links"][TARGET]), headers={"User-Agent": CHROME})
        networks = (ipaddress.ip_network("127.0.0.0/8"),)
        flagged = await make_client(
            tracking_config(make_config, tracking_machine_networks=networks), clock=clock
        )
        clock.advance(1)
        await flagged.get(path(made["links"][TARGET]), headers={"User-Agent": CHROME})
        machines = [e.get("machine") for e in await events(api)]
        assert machines == ["data_centre", None]  # newest first

    async def test_a_target_beyond_ascii_is_sent_percent_encoded(
        self, api: httpx.AsyncClient
    ) -> None:
        made = await make_urls(api, links=["https://example.com/café"])
        response = await api.get(path(made["links"]["https://example.com/café"]))
        assert response.headers["location"] == "https://example.com/caf%C3%A9"

    async def test_redis_down_the_recipient_still_gets_there(
        self, make_client: MakeClient, make_config: Any, api: httpx.AsyncClient
    ) -> None:
        made = await make_urls(api)
        down = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
        broken = await make_client(tracking_config(make_config, ingest_timeout=0.2), redis=down)
        response = await broken.get(path(made["links"][TARGET]))
        assert response.status_code == 302
        assert response.headers["location"] == TARGET
        assert (await broken.get(path(made["open_url"]))).content == PIXEL_GIF
        await down.aclose()


class TestRefused:
    async def test_a_tampered_token_is_a_404_and_records_nothing(
        self, api: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        made = await make_urls(api)
        url = path(made["links"][TARGET])
        for position in (len("/t/c/") + 2, len(url) // 2, len(url) - 3):
            char = "A" if url[position] != "A" else "B"
            tampered = url[:position] + char + url[position + 1 :]
            response = await api.get(tampered)
            assert response.status_code == 404
            assert "location" not in response.headers
        assert await nothing_recorded(fake_redis)

    async def test_a_token_signed_elsewhere_is_refused(
        self, api: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        foreign = Signer(["someone-elses-key-0123456789abcdef0123"])
        claims = Claims("c", DEFAULT_ACCOUNT, "msg_1", "a@example.com", 0, "https://evil.example/")
        response = await api.get(f"/t/c/{foreign.sign(claims)}")
        assert response.status_code == 404
        assert "location" not in response.headers
        assert await nothing_recorded(fake_redis)

    async def test_a_token_of_an_old_key_still_works(self, api: httpx.AsyncClient) -> None:
        claims = Claims("c", DEFAULT_ACCOUNT, "msg_1", "a@example.com", 0, TARGET)
        response = await api.get(f"/t/c/{Signer([OLD_KEY]).sign(claims)}")
        assert response.headers["location"] == TARGET

    async def test_a_token_of_another_kind_is_refused(
        self, api: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        made = await make_urls(api)
        open_token = made["open_url"].rsplit("/", 1)[1]
        unsubscribe_token = made["unsubscribe_url"].rsplit("/", 1)[1]
        assert (await api.get(f"/t/c/{open_token}")).status_code == 404
        assert (await api.get(f"/t/o/{unsubscribe_token}")).status_code == 404
        assert (await api.post(f"/t/u/{open_token}", data=ONE_CLICK)).status_code == 404
        assert await nothing_recorded(fake_redis)

    @pytest.mark.parametrize("token", ["x", "%2e%2e", "AQ" * 4000, "..", "a.b"])
    async def test_garbage(self, api: httpx.AsyncClient, fake_redis: Redis, token: str) -> None:
        assert (await api.get(f"/t/o/{token}")).status_code == 404
        assert await nothing_recorded(fake_redis)


class TestUnsubscribe:
    async def test_get_shows_a_button_and_changes_nothing(
        self, api: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        made = await make_urls(api)
        page = await api.get(path(made["unsubscribe_url"]))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<form method="post">' in page.text
        assert 'name="List-Unsubscribe" value="One-Click"' in page.text
        assert "Alex@Example.com" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert await nothing_recorded(fake_redis)
        assert (await api.get("/api/suppressions/alex@example.com")).status_code == 404

    async def test_the_page_escapes_the_address(self, api: httpx.AsyncClient) -> None:
        made = await make_urls(api, recipient='"<b>x</b>"@example.com')
        page = await api.get(path(made["unsubscribe_url"]))
        assert "<b>x</b>" not in page.text
        assert "&lt;b&gt;" in page.text

    async def test_one_click_records_and_suppresses(self, api: httpx.AsyncClient) -> None:
        made = await make_urls(api)
        response = await api.post(path(made["unsubscribe_url"]), data=ONE_CLICK)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
        [event] = await events(api)
        assert event["type"] == "email.unsubscribe"
        assert event["recipient"] == "Alex@Example.com"
        assert event["provider"] == "mailhooks"
        suppressed = await api.get("/api/suppressions/ALEX@example.com")
        assert suppressed.status_code == 200
        assert suppressed.json() == {
            "email": "alex@example.com",
            "reason": "unsubscribe",
            "event_id": event["id"],
            "created_at": suppressed.json()["created_at"],
        }

    async def test_posting_again_records_it_once(
        self, api: httpx.AsyncClient, clock: Clock
    ) -> None:
        made = await make_urls(api)
        for _ in range(3):
            response = await api.post(path(made["unsubscribe_url"]), data=ONE_CLICK)
            assert response.status_code == 200
            clock.advance(30)
        assert len(await events(api)) == 1

    async def test_a_multipart_body_is_one_click_too(self, api: httpx.AsyncClient) -> None:
        made = await make_urls(api)
        response = await api.post(
            path(made["unsubscribe_url"]), files={"List-Unsubscribe": (None, "One-Click")}
        )
        assert response.status_code == 200
        assert len(await events(api)) == 1

    @pytest.mark.parametrize(
        "data", [{}, {"List-Unsubscribe": "yes"}, {"unsubscribe": "One-Click"}]
    )
    async def test_a_post_without_one_click_records_nothing(
        self, api: httpx.AsyncClient, fake_redis: Redis, data: dict[str, str]
    ) -> None:
        made = await make_urls(api)
        response = await api.post(path(made["unsubscribe_url"]), data=data)
        assert response.status_code == 422
        assert await nothing_recorded(fake_redis)

    async def test_an_account_deleted_since_records_nothing(
        self, make_client: MakeClient, make_config: Any, fake_redis: Redis
    ) -> None:
        admin = "admin-key-0123456789abcdef"
        api = await make_client(tracking_config(make_config, admin_api_keys=(admin,)))
        as_admin = {"Authorization": f"Bearer {admin}"}
        account = (await api.post("/api/accounts", json={"name": "A"}, headers=as_admin)).json()
        made = (
            await api.post(
                "/api/tracking",
                json={"email_id": "m", "recipient": "a@example.com"},
                headers={**as_admin, "X-Account-Id": account["id"]},
            )
        ).json()
        await api.delete(f"/api/accounts/{account['id']}", headers=as_admin)
        response = await api.post(path(made["unsubscribe_url"]), data=ONE_CLICK)
        assert response.status_code == 200
        assert await nothing_recorded(fake_redis)


class TestHtml:
    async def test_one_call_tracks_a_message(self, api: httpx.AsyncClient) -> None:
        html = (
            "<html><body><p>Spring sale: <a href='https://shop.example.com/s?a=1&amp;b=2'>shop"
            '</a></p><a href="mailto:help@example.com">help</a>'
            '<a href="{{unsubscribe_url}}">Unsubscribe</a></body></html>'
        )
        response = await api.post(
            "/api/tracking/html",
            json={"email_id": "msg_1", "recipient": "alex@example.com", "html": html},
        )
        assert response.status_code == 200, response.text
        made = response.json()
        [(original, tracked)] = made["links"].items()
        assert original == "https://shop.example.com/s?a=1&b=2"
        assert made["html"] == (
            f'<html><body><p>Spring sale: <a href="{tracked}">shop</a></p>'
            '<a href="mailto:help@example.com">help</a>'
            f'<a href="{made["unsubscribe_url"]}">Unsubscribe</a>'
            f'<img src="{made["open_url"]}" width="1" height="1" alt="" '
            'style="border:0;width:1px;height:1px" /></body></html>'
        )
        assert made["headers"]["List-Unsubscribe"] == f"<{made['unsubscribe_url']}>"
        followed = await api.get(path(tracked))
        assert followed.headers["location"] == original

    async def test_opens_and_clicks_can_be_left_out(self, api: httpx.AsyncClient) -> None:
        html = '<body><a href="https://a.example/">a</a></body>'
        response = await api.post(
            "/api/tracking/html",
            json={
                "email_id": "m",
                "recipient": "a@example.com",
                "html": html,
                "track_opens": False,
                "track_clicks": False,
            },
        )
        assert response.json()["html"] == html
        assert response.json()["links"] == {}
