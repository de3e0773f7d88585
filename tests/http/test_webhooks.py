"""The management API through HTTP, on fakeredis (the real-Redis twins are in test_store.py)."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from service.core.accounts import DEFAULT_ACCOUNT
from service.storage import keys
from service.storage.webhooks import WebhookStore
from tests.conftest import API_KEY, MakeClient

pytestmark = pytest.mark.anyio

MANAGE = "/api/webhooks/manage"
SEED_CREATE = {
    "url": "https://yourapp.com/hooks/email-events",
    "events": "open,click,bounce,unsubscribe",
    "secret": "whsec_your_secret_key_here",
}


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"url": "https://yourapp.com/hooks", "events": "open", **fields}
    response = await client.post(MANAGE, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def assert_error(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error.get("field") == field


class TestSeedContract:
    async def test_create_request_and_response_as_on_the_api_page(
        self, client: httpx.AsyncClient
    ) -> None:
        response = await client.post(MANAGE, json=SEED_CREATE)
        assert response.status_code == 201
        assert response.json() == {
            "id": 1,
            "url": "https://yourapp.com/hooks/email-events",
            "events": "open,click,bounce,unsubscribe",
            "active": True,
            "created_at": "2026-03-03T10:00:00Z",
        }
        assert response.headers["location"] == f"{MANAGE}/1"

    async def test_list_shape_as_on_the_api_page(self, client: httpx.AsyncClient) -> None:
        await create(
            client, url="https://yourapp.com/hooks/email-events", events="open,click,bounce"
        )
        await create(client, url="https://yourapp.com/hooks/unsubscribes", events="unsubscribe")
        response = await client.get(MANAGE)
        assert response.status_code == 200
        assert response.json() == {
            "webhooks": [
                {
                    "id": 1,
                    "url": "https://yourapp.com/hooks/email-events",
                    "events": "open,click,bounce",
                    "active": True,
                    "created_at": "2026-03-03T10:00:00Z",
                },
                {
                    "id": 2,
                    "url": "https://yourapp.com/hooks/unsubscribes",
                    "events": "unsubscribe",
                    "active": True,
                    "created_at": "2026-03-03T10:00:00Z",
                },
            ]
        }
        assert "link" not in response.headers

    async def test_empty_list(self, client: httpx.AsyncClient) -> None:
        response = await client.get(MANAGE)
        assert response.json() == {"webhooks": []}


class TestCreate:
    async def test_generated_secret_is_returned_once(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        secret = created["secret"]
        assert secret.startswith("whsec_")
        assert len(secret) == len("whsec_") + 32
        for response in (await client.get(MANAGE), await client.get(f"{MANAGE}/1")):
            assert secret not in response.text
            assert "secret" not in response.text

    async def test_given_secret_is_never_returned(self, client: httpx.AsyncClient) -> None:
        created = await create(client, secret="my-own-secret-value")
        assert "secret" not in created
        patched = await client.patch(f"{MANAGE}/1", json={"secret": "another-secret-value"})
        for response in (patched, await client.get(MANAGE), await client.get(f"{MANAGE}/1")):
            assert "my-own-secret-value" not in response.text
            assert "another-secret-value" not in response.text
            assert "secret" not in response.text

    async def test_secrets_never_reach_the_logs(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        created = await create(client)
        await create(client, secret="my-own-secret-value")
        await client.patch(f"{MANAGE}/2", json={"secret": "rotated-secret-value"})
        assert "created" in caplog.text
        for secret in (created["secret"], "my-own-secret-value", "rotated-secret-value"):
            assert secret not in caplog.text

    async def test_events_are_cleaned_and_stored_short(self, client: httpx.AsyncClient) -> None:
        created = await create(client, events=" email.open, click ,open,EMAIL.CLICK")
        assert created["events"] == "open,click"

    async def test_wildcard(self, client: httpx.AsyncClient) -> None:
        assert (await create(client, events="open,*"))["events"] == "*"

    async def test_new_event_types(self, client: httpx.AsyncClient) -> None:
        assert (await create(client, events="delivered,complaint"))["events"] == (
            "delivered,complaint"
        )

    async def test_inactive_on_create(self, client: httpx.AsyncClient) -> None:
        assert (await create(client, active=False))["active"] is False

    async def test_null_secret_means_generate(self, client: httpx.AsyncClient) -> None:
        assert (await create(client, secret=None))["secret"].startswith("whsec_")

    async def test_ids_are_never_reused(self, client: httpx.AsyncClient) -> None:
        await create(client)
        assert (await client.delete(f"{MANAGE}/1")).status_code == 204
        assert (await create(client))["id"] == 2

    async def test_timestamps_come_from_the_clock(self, make_client: MakeClient) -> None:
        from datetime import datetime, timedelta, timezone

        paris = timezone(timedelta(hours=1))
        client = await make_client(clock=lambda: datetime(2026, 1, 10, 13, 0, 5, 999, paris))
        assert (await create(client))["created_at"] == "2026-01-10T12:00:05Z"

    async def test_hundred_concurrent_creates(self, client: httpx.AsyncClient) -> None:
        ids: list[int] = []

        async def one(n: int) -> None:
            ids.append((await create(client, url=f"https://h{n}.example/x"))["id"])

        async with anyio.create_task_group() as group:
            for n in range(100):
                group.start_soon(one, n)
        assert sorted(ids) == list(range(1, 101))
        listed = (await client.get(MANAGE)).json()["webhooks"]
        assert [w["id"] for w in listed] == list(range(1, 101))
        assert {w["url"] for w in listed} == {f"https://h{n}.example/x" for n in range(100)}


class TestRateLimit:
    async def test_absent_is_unlimited_and_not_shown(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        assert "rate_limit" not in created
        assert (await client.get(f"{MANAGE}/1")).json() == {
            k: v for k, v in created.items() if k != "secret"
        }

    async def test_set_on_create_shown_everywhere(self, client: httpx.AsyncClient) -> None:
        assert (await create(client, rate_limit=25))["rate_limit"] == 25
        assert (await client.get(f"{MANAGE}/1")).json()["rate_limit"] == 25
        assert (await client.get(MANAGE)).json()["webhooks"][0]["rate_limit"] == 25
        assert (await create(client, rate_limit=None)).get("rate_limit") is None

    async def test_patch_changes_or_clears_it(self, client: httpx.AsyncClient) -> None:
        await create(client, rate_limit=5)
        changed = await client.patch(f"{MANAGE}/1", json={"rate_limit": 1})
        assert changed.json()["rate_limit"] == 1
        untouched = await client.patch(f"{MANAGE}/1", json={"active": False})
        assert untouched.json()["rate_limit"] == 1
        cleared = await client.patch(f"{MANAGE}/1", json={"rate_limit": None})
        assert cleared.status_code == 200
        assert "rate_limit" not in cleared.json()
        assert "rate_limit" not in (await client.get(f"{MANAGE}/1")).json()

    async def test_stored_in_the_webhook_hash(
        self, make_client: MakeClient, fake_redis: Redis
    ) -> None:
        client = await make_client(redis=fake_redis)
        await create(client, rate_limit=7)
        stored = await WebhookStore(fake_redis).get(1)
        assert stored is not None
        assert stored.rate_limit == 7
        await client.patch(f"{MANAGE}/1", json={"rate_limit": None})
        stored = await WebhookStore(fake_redis).get(1)
        assert stored is not None
        assert stored.rate_limit is None


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"events": "open"}, "url"),
            ({"url": "https://a.example/x"}, "events"),
            ({"url": 5, "events": "open"}, "url"),
            ({"url": "https://a.example/x", "events": ["open"]}, "events"),
            ({"url": "https://a.example/x", "events": "open", "secret": 12345678}, "secret"),
            ({"url": "https://a.example/x", "events": "open", "secret": "short"}, "secret"),
            ({"url": "https://a.example/x", "events": "open", "secret": "s" * 257}, "secret"),
            ({"url": "https://a.example/x", "events": "open", "active": "yes"}, "active"),
            ({"url": "https://a.example/x", "events": "open", "secert": "typo-typo"}, "secert"),
            ({"url": "", "events": "open"}, "url"),
            ({"url": "https://a.example/" + "x" * 2040, "events": "open"}, "url"),
            ({"url": "http://a.example/x", "events": "open"}, "url"),
            ({"url": "https://localhost/x", "events": "open"}, "url"),
            ({"url": "https://169.254.169.254/x", "events": "open"}, "url"),
            ({"url": "https://[::1]/x", "events": "open"}, "url"),
            ({"url": "https://10.1.2.3/x", "events": "open"}, "url"),
            ({"url": "not a url", "events": "open"}, "url"),
            ({"url": "https://a.example/x", "events": ""}, "events"),
            ({"url": "https://a.example/x", "events": " , "}, "events"),
            ({"url": "https://a.example/x", "events": "open,sent"}, "events"),
            ({"url": "https://a.example/x", "events": "open", "rate_limit": 0}, "rate_limit"),
            ({"url": "https://a.example/x", "events": "open", "rate_limit": -1}, "rate_limit"),
            ({"url": "https://a.example/x", "events": "open", "rate_limit": 2.5}, "rate_limit"),
            ({"url": "https://a.example/x", "events": "open", "rate_limit": "5"}, "rate_limit"),
            ({"url": "https://a.example/x", "events": "open", "rate_limit": 10_001}, "rate_limit"),
        ],
    )
    async def test_bad_create_is_a_422_naming_the_field(
        self, client: httpx.AsyncClient, body: dict[str, Any], field: str
    ) -> None:
        response = await client.post(MANAGE, json=body)
        assert_error(response, 422, "validation_error", field)
        assert (await client.get(MANAGE)).json() == {"webhooks": []}

    @pytest.mark.parametrize(
        "url",
        ["https://xn--ls8h.la/", "https://xn--/", "https://%31%32%37.0.0.1/", "https://a.com:0/"],
    )
    async def test_bad_hosts_are_a_422_on_url_for_create_and_update(
        self, client: httpx.AsyncClient, url: str
    ) -> None:
        created = await client.post(MANAGE, json={"url": url, "events": "open"})
        assert_error(created, 422, "validation_error", "url")
        await client.post(MANAGE, json={"url": "https://yourapp.com/x", "events": "open"})
        updated = await client.patch(f"{MANAGE}/1", json={"url": url})
        assert_error(updated, 422, "validation_error", "url")
        assert (await client.get(f"{MANAGE}/1")).json()["url"] == "https://yourapp.com/x"

    async def test_an_idn_is_still_accepted(self, client: httpx.AsyncClient) -> None:
        created = await client.post(MANAGE, json={"url": "https://bücher.example/", "events": "*"})
        assert created.status_code == 201
        assert created.json()["url"] == "https://bücher.example/"

    async def test_unknown_event_is_named_in_the_message(self, client: httpx.AsyncClient) -> None:
        response = await client.post(MANAGE, json={"url": "https://a.example", "events": "sent"})
        assert "'sent'" in response.json()["error"]["message"]

    async def test_body_must_be_an_object(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.post(MANAGE, json=["x"]), 422, "validation_error")

    @pytest.mark.parametrize("content", [b"{", b"", b"{'url': 1}", b"\xff\xfe", b"nul\x00"])
    async def test_malformed_json_is_400(self, client: httpx.AsyncClient, content: bytes) -> None:
        response = await client.post(
            MANAGE, content=content, headers={"content-type": "application/json"}
        )
        assert_error(response, 400, "malformed_json")

    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded"]
    )
    async def test_wrong_content_type_is_415(
        self, client: httpx.AsyncClient, content_type: str | None
    ) -> None:
        headers = {"content-type": content_type} if content_type else {}
        response = await client.post(
            MANAGE, content=b'{"url":"https://a.example","events":"open"}', headers=headers
        )
        assert_error(response, 415, "unsupported_media_type")

    async def test_json_with_charset_is_fine(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            MANAGE,
            content=b'{"url":"https://a.example","events":"open"}',
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert response.status_code == 201

    async def test_oversized_body_is_413(self, make_client: MakeClient, make_config: Any) -> None:
        client = await make_client(make_config(max_body_bytes=1024))
        body = {"url": "https://a.example/x", "events": "open", "secret": "s" * 2000}
        assert_error(await client.post(MANAGE, json=body), 413, "payload_too_large")

    async def test_oversized_streamed_body_without_length_is_413(
        self, make_client: MakeClient, make_config: Any
    ) -> None:
        client = await make_client(make_config(max_body_bytes=1024))

        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 200

        response = await client.post(
            MANAGE, content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in response.request.headers
        assert_error(response, 413, "payload_too_large")

    async def test_flags_allow_http_and_private_urls(
        self, make_client: MakeClient, make_config: Any
    ) -> None:
        client = await make_client(make_config(allow_http_urls=True, allow_private_urls=True))
        created = await create(client, url="http://127.0.0.1:9000/hook")
        assert created["url"] == "http://127.0.0.1:9000/hook"

    @pytest.mark.parametrize(
        "query",
        ["limit=0", "limit=1001", "limit=abc", "limit=-1", "after=x", "after=-5", "limit=²"],
    )
    async def test_bad_paging_parameters(self, client: httpx.AsyncClient, query: str) -> None:
        response = await client.get(f"{MANAGE}?{query}")
        assert_error(response, 422, "validation_error", query.split("=")[0])


class TestPaging:
    async def test_limit_and_after_with_link_header(self, client: httpx.AsyncClient) -> None:
        for n in range(5):
            await create(client, url=f"https://h{n}.example/")
        first = await client.get(MANAGE, params={"limit": 2})
        assert [w["id"] for w in first.json()["webhooks"]] == [1, 2]
        assert set(first.json()) == {"webhooks"}
        link = first.links["next"]["url"]
        second = await client.get(link)
        assert [w["id"] for w in second.json()["webhooks"]] == [3, 4]
        third = await client.get(second.links["next"]["url"])
        assert [w["id"] for w in third.json()["webhooks"]] == [5]
        assert "link" not in third.headers

    async def test_after_skips_deleted(self, client: httpx.AsyncClient) -> None:
        for _ in range(3):
            await create(client)
        await client.delete(f"{MANAGE}/2")
        response = await client.get(MANAGE, params={"after": 1})
        assert [w["id"] for w in response.json()["webhooks"]] == [3]

    async def test_default_returns_up_to_1000(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        # Created straight through the store: 1,001 HTTP round trips would only slow the suite.
        store = WebhookStore(fake_redis)
        for n in range(1001):
            await store.create(
                account=DEFAULT_ACCOUNT,
                url=f"https://h{n}.example/",
                events=("open",),
                secret="s" * 8,
                active=True,
                now="t",
                limit=2000,
            )
        response = await client.get(MANAGE)
        assert len(response.json()["webhooks"]) == 1000
        assert "after=1000" in response.links["next"]["url"]


class TestGetUpdateDelete:
    async def test_get_one(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        created.pop("secret")
        response = await client.get(f"{MANAGE}/1")
        assert response.status_code == 200
        assert response.json() == created

    async def test_patch_each_field(self, client: httpx.AsyncClient) -> None:
        await create(client)
        response = await client.patch(
            f"{MANAGE}/1",
            json={"url": "https://new.example/h", "events": "bounce, email.click", "active": False},
        )
        assert response.status_code == 200
        assert response.json() == {
            "id": 1,
            "url": "https://new.example/h",
            "events": "bounce,click",
            "active": False,
            "created_at": "2026-03-03T10:00:00Z",
        }
        assert (await client.get(f"{MANAGE}/1")).json() == response.json()

    async def test_patch_only_what_is_sent(self, client: httpx.AsyncClient) -> None:
        await create(client, events="open,click")
        response = await client.patch(f"{MANAGE}/1", json={"active": False})
        assert response.json()["events"] == "open,click"
        assert response.json()["url"] == "https://yourapp.com/hooks"

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"url": "http://a.example"}, "url"),
            ({"url": "https://192.168.0.1"}, "url"),
            ({"events": "sent"}, "events"),
            ({"events": ""}, "events"),
            ({"secret": "short"}, "secret"),
            ({"secret": None}, "secret"),
            ({"active": 1}, "active"),
            ({"rate_limit": 0}, "rate_limit"),
            ({"rate_limit": True}, "rate_limit"),
            ({"id": 7}, "id"),
            ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
        ],
    )
    async def test_patch_validation(
        self, client: httpx.AsyncClient, body: dict[str, Any], field: str
    ) -> None:
        before = await create(client)
        assert_error(await client.patch(f"{MANAGE}/1", json=body), 422, "validation_error", field)
        before.pop("secret")
        assert (await client.get(f"{MANAGE}/1")).json() == before

    async def test_delete(self, client: httpx.AsyncClient) -> None:
        await create(client)
        response = await client.delete(f"{MANAGE}/1")
        assert response.status_code == 204
        assert response.content == b""
        assert_error(await client.get(f"{MANAGE}/1"), 404, "not_found")
        assert (await client.get(MANAGE)).json() == {"webhooks": []}

    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    async def test_missing_webhook_is_404(self, client: httpx.AsyncClient, method: str) -> None:
        kwargs: dict[str, Any] = {"json": {"active": False}} if method == "PATCH" else {}
        response = await client.request(method, f"{MANAGE}/42", **kwargs)
        assert_error(response, 404, "not_found")

    async def test_non_integer_id_is_404(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.get(f"{MANAGE}/abc"), 404, "not_found")

    async def test_wrong_method_is_405(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.put(f"{MANAGE}/1", json={}), 405, "method_not_allowed")
        assert_error(await client.delete(MANAGE), 405, "method_not_allowed")

    @pytest.mark.parametrize(
        ("method", "path", "allowed"),
        [
            ("OPTIONS", MANAGE, "GET, HEAD, POST"),
            ("DELETE", MANAGE, "GET, HEAD, POST"),
            ("PUT", f"{MANAGE}/1", "DELETE, GET, HEAD, PATCH"),
            ("GET", "/api/webhooks", "HEAD, POST"),
        ],
    )
    async def test_405_allows_every_method_of_the_path(
        self, client: httpx.AsyncClient, method: str, path: str, allowed: str
    ) -> None:
        response = await client.request(method, path)
        assert_error(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allowed

    async def test_unknown_path_is_json_404(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.get("/nope"), 404, "not_found")


class TestAuth:
    @pytest.mark.parametrize(
        "authorization",
        [
            None,
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            f"Token {API_KEY}",
            "Bearer wrong-key",
        ],
    )
    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", MANAGE), ("POST", MANAGE), ("GET", f"{MANAGE}/1"), ("PATCH", f"{MANAGE}/1"),
         ("DELETE", f"{MANAGE}/1")],
    )  # fmt: skip
    async def test_missing_or_wrong_key_is_401(
        self, make_client: MakeClient, authorization: str | None, method: str, path: str
    ) -> None:
        client = await make_client(auth=False)
        headers = {"authorization": authorization} if authorization is not None else {}
        response = await client.request(method, path, headers=headers, json={})
        assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_any_configured_key_works(
        self, make_client: MakeClient, make_config: Any
    ) -> None:
        other = "second-key-abcdefghijkl"
        client = await make_client(make_config(api_keys=(API_KEY, other)), auth=False)
        for key in (API_KEY, other):
            response = await client.get(MANAGE, headers={"authorization": f"bearer {key}"})
            assert response.status_code == 200

    async def test_a_prefix_of_a_key_is_not_a_key(self, make_client: MakeClient) -> None:
        client = await make_client(auth=False)
        response = await client.get(MANAGE, headers={"authorization": f"Bearer {API_KEY[:-1]}"})
        assert response.status_code == 401

    async def test_health_and_docs_need_no_key(self, make_client: MakeClient) -> None:
        client = await make_client(auth=False)
        for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code == 200


@pytest.mark.redis
class TestOnRealRedis:
    async def test_hundred_concurrent_creates(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        from tests.storage.test_webhooks import assert_indexes_consistent

        client = await make_client(redis=real_redis)
        async with anyio.create_task_group() as group:
            for _ in range(100):
                group.start_soon(create, client)
        listed = (await client.get(MANAGE)).json()["webhooks"]
        assert [w["id"] for w in listed] == list(range(1, 101))
        await assert_indexes_consistent(real_redis)


class TestCustomHeaders:
    async def test_set_on_create_shown_in_every_view(self, client: httpx.AsyncClient) -> None:
        headers = {"Authorization": "Bearer endpoint-token", "X-Tenant": "acme"}
        created = await create(client, headers=headers)
        assert created["headers"] == headers
        assert (await client.get(f"{MANAGE}/1")).json()["headers"] == headers
        assert (await client.get(MANAGE)).json()["webhooks"][0]["headers"] == headers

    async def test_absent_when_none_so_the_seed_shape_is_kept(
        self, client: httpx.AsyncClient
    ) -> None:
        for created in (await create(client), await create(client, headers={})):
            assert "headers" not in created
            assert "headers" not in (await client.get(f"{MANAGE}/{created['id']}")).json()

    async def test_patch_replaces_the_set_and_empty_or_null_removes_it(
        self, client: httpx.AsyncClient
    ) -> None:
        await create(client, headers={"X-A": "1", "X-B": "2"})
        patched = await client.patch(f"{MANAGE}/1", json={"headers": {"X-C": "3"}})
        assert patched.json()["headers"] == {"X-C": "3"}
        untouched = await client.patch(f"{MANAGE}/1", json={"active": False})
        assert untouched.json()["headers"] == {"X-C": "3"}
        for empty in ({}, None):
            await client.patch(f"{MANAGE}/1", json={"headers": {"X-D": "4"}})
            cleared = await client.patch(f"{MANAGE}/1", json={"headers": empty})
            assert "headers" not in cleared.json()

    @pytest.mark.parametrize(
        ("headers", "field"),
        [
            ({"X-Webhook-Signature": "forged"}, "headers.X-Webhook-Signature"),
            ({"Content-Type": "text/plain"}, "headers.Content-Type"),
            ({"webhook-id": "x"}, "headers.webhook-id"),
            ({"Host": "evil.example"}, "headers.Host"),
            ({"Transfer-Encoding": "chunked"}, "headers.Transfer-Encoding"),
            ({"Proxy-Authorization": "Basic x"}, "headers.Proxy-Authorization"),
            ({"X-Foo": "a\r\nX-Injected: 1"}, "headers.X-Foo"),
            ({"Bad Name": "x"}, "headers.Bad Name"),
            ({f"X-H{n}": "v" for n in range(21)}, "headers"),
            ({"X-A": "v" * 5000, "X-B": "v" * 5000}, "headers.X-B"),
        ],
    )
    async def test_refused_with_a_422_naming_the_header_on_create_and_update(
        self, client: httpx.AsyncClient, headers: dict[str, str], field: str
    ) -> None:
        body = {"url": "https://yourapp.com/hooks", "events": "open", "headers": headers}
        assert_error(await client.post(MANAGE, json=body), 422, "validation_error", field)
        await create(client)
        patched = await client.patch(f"{MANAGE}/1", json={"headers": headers})
        assert_error(patched, 422, "validation_error", field)
        assert "headers" not in (await client.get(f"{MANAGE}/1")).json()

    async def test_a_value_that_is_not_a_string_is_a_422(self, client: httpx.AsyncClient) -> None:
        body = {"url": "https://yourapp.com/hooks", "events": "open", "headers": {"X-A": 1}}
        response = await client.post(MANAGE, json=body)
        assert response.status_code == 422
        assert response.json()["error"]["field"].startswith("headers")

    async def test_values_never_reach_the_logs(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        await create(client, headers={"Authorization": "Bearer tok-on-create"})
        await client.patch(f"{MANAGE}/1", json={"headers": {"X-Key": "tok-on-update"}})
        await client.post(
            MANAGE,
            json={"url": "https://y.com/h", "events": "open", "headers": {"X-K": "tok-bad\n"}},
        )
        assert "created" in caplog.text
        for value in ("tok-on-create", "tok-on-update", "tok-bad"):
            assert value not in caplog.text


ROTATE = MANAGE + "/{id}/secret/rotate"


class TestSecretRotation:
    async def stored(self, redis: Redis, webhook_id: int = 1) -> Any:
        webhook = await WebhookStore(redis).get(webhook_id)
        assert webhook is not None
        return webhook

    async def test_a_generated_secret_is_returned_once_the_old_one_kept_for_a_day(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        await create(client, secret="first-secret-value")
        response = await client.post(ROTATE.format(id=1), json={})
        assert response.status_code == 200
        body = response.json()
        assert body["webhook_id"] == 1
        assert body["secret"].startswith("whsec_")
        # FIXED_NOW (2026-03-03T10:00:00Z) plus the default grace of a day.
        assert body["previous_secrets_expire_at"] == "2026-03-04T10:00:00Z"
        stored = await self.stored(fake_redis)
        assert stored.secret == body["secret"]
        assert [s for s, _ in stored.previous_secrets] == ["first-secret-value"]
        for view in (await client.get(MANAGE), await client.get(f"{MANAGE}/1")):
            assert body["secret"] not in view.text
            assert "first-secret-value" not in view.text
            assert "secret" not in view.text

    async def test_a_given_secret_is_not_echoed(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        await create(client, secret="first-secret-value")
        response = await client.post(
            ROTATE.format(id=1), json={"secret": "second-secret-value", "grace_period_seconds": 60}
        )
        assert response.json() == {
            "webhook_id": 1,
            "previous_secrets_expire_at": "2026-03-03T10:01:00Z",
        }
        assert (await self.stored(fake_redis)).secret == "second-secret-value"

    async def test_a_grace_of_zero_keeps_no_previous_secret(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        await create(client, secret="first-secret-value")
        await client.post(ROTATE.format(id=1), json={"secret": "second-secret-value"})
        response = await client.post(
            ROTATE.format(id=1), json={"secret": "third-secret-value", "grace_period_seconds": 0}
        )
        assert response.json()["previous_secrets_expire_at"] is None
        stored = await self.stored(fake_redis)
        assert (stored.secret, stored.previous_secrets) == ("third-secret-value", ())

    async def test_patching_the_secret_drops_the_previous_ones(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        await create(client, secret="first-secret-value")
        await client.post(ROTATE.format(id=1), json={"secret": "second-secret-value"})
        await client.patch(f"{MANAGE}/1", json={"secret": "patched-secret-value"})
        stored = await self.stored(fake_redis)
        assert (stored.secret, stored.previous_secrets) == ("patched-secret-value", ())

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"grace_period_seconds": 604801}, "grace_period_seconds"),
            ({"grace_period_seconds": -1}, "grace_period_seconds"),
            ({"grace_period_seconds": "1"}, "grace_period_seconds"),
            ({"secret": "short"}, "secret"),
            ({"secert": "x"}, "secert"),
        ],
    )
    async def test_validation(
        self, client: httpx.AsyncClient, body: dict[str, Any], field: str
    ) -> None:
        await create(client)
        response = await client.post(ROTATE.format(id=1), json=body)
        assert_error(response, 422, "validation_error", field)

    async def test_a_week_is_the_most(self, client: httpx.AsyncClient) -> None:
        await create(client)
        response = await client.post(ROTATE.format(id=1), json={"grace_period_seconds": 604800})
        assert response.json()["previous_secrets_expire_at"] == "2026-03-10T10:00:00Z"

    async def test_missing_webhook_is_404(self, client: httpx.AsyncClient) -> None:
        assert_error(await client.post(ROTATE.format(id=9), json={}), 404, "not_found")

    async def test_secrets_never_reach_the_logs(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        await create(client, secret="first-secret-value")
        generated = (await client.post(ROTATE.format(id=1), json={})).json()["secret"]
        await client.post(ROTATE.format(id=1), json={"secret": "given-secret-value"})
        assert "rotated" in caplog.text
        for secret in ("first-secret-value", generated, "given-secret-value"):
            assert secret not in caplog.text


@pytest.mark.redis
class TestRotationOnRealRedis:
    async def test_concurrent_rotations_lose_no_replaced_secret(
        self, make_client: MakeClient, real_redis: Redis
    ) -> None:
        client = await make_client(redis=real_redis)
        await create(client, secret="first-secret-value")
        secrets = [f"rotated-secret-{n}" for n in range(4)]
        async with anyio.create_task_group() as group:
            for secret in secrets:
                group.start_soon(
                    lambda s: client.post(ROTATE.format(id=1), json={"secret": s}), secret
                )
        webhook = await WebhookStore(real_redis).get(1)
        assert webhook is not None
        # Every secret but the last one to win was replaced, and each of those is kept.
        kept = {s for s, _ in webhook.previous_secrets}
        assert kept | {webhook.secret} == {"first-secret-value", *secrets}
        assert webhook.secret not in kept


class TestRenamedByAMigration:
    """An id `mailhooks migrate` replaced (keys.WEBHOOK_ALIASES) answers as its webhook under
    the new id, on every route; another account's alias does not exist for this one."""

    async def test_every_route_follows_the_alias(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        created = await create(client, secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        new_id, old_id = created["id"], 700
        await fake_redis.hset(keys.webhook_aliases(DEFAULT_ACCOUNT), str(old_id), str(new_id))  # type: ignore[misc]

        shown = await client.get(f"{MANAGE}/{old_id}")
        assert shown.json() == created
        updated = await client.patch(f"{MANAGE}/{old_id}", json={"events": "click"})
        assert (updated.status_code, updated.json()["id"]) == (200, new_id)
        rotated = await client.post(f"{MANAGE}/{old_id}/secret/rotate", json={})
        assert rotated.json()["webhook_id"] == new_id
        deliveries = await client.get(f"{MANAGE}/{old_id}/deliveries")
        assert deliveries.status_code == 200
        assert (await client.delete(f"{MANAGE}/{old_id}")).status_code == 204
        assert (await client.get(f"{MANAGE}/{new_id}")).status_code == 404
        assert (await client.get(f"{MANAGE}/{old_id}")).status_code == 404

    async def test_an_alias_of_another_account_is_not_followed(
        self, client: httpx.AsyncClient, fake_redis: Redis
    ) -> None:
        created = await create(client)
        await fake_redis.hset(keys.webhook_aliases("acc_other"), "700", str(created["id"]))  # type: ignore[misc]
        assert (await client.get(f"{MANAGE}/700")).status_code == 404
