"""The accounts API and account scoping through HTTP: admin keys, account keys, X-Account-Id,
and every account-scoped route answering another account's resources with 404."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Config
from service.core.accounts import DEFAULT_ACCOUNT
from service.storage import keys
from tests.conftest import API_KEY, MakeClient
from tests.partitioned import in_partition, key_names

pytestmark = pytest.mark.anyio

ADMIN = "admin-key-0123456789abcdef"
HOOK = {"url": "https://hooks.example.com/in", "events": "*", "secret": "s3cret-s3cret"}


def bearer(key: str, account: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if account is not None:
        headers["X-Account-Id"] = account
    return headers


class Platform:
    """An admin client, and helpers that make accounts and their keys through the API."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def account(self, name: str = "Acme") -> dict[str, Any]:
        response = await self.http.post("/api/accounts", json={"name": name}, headers=bearer(ADMIN))
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def key(self, account_id: str) -> str:
        response = await self.http.post(f"/api/accounts/{account_id}/keys", headers=bearer(ADMIN))
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    async def customer(self, name: str = "Acme") -> tuple[str, dict[str, str]]:
        """A new account's id and the headers of its own key."""
        account = await self.account(name)
        return account["id"], bearer(await self.key(account["id"]))


@pytest.fixture
def admin_config(make_config: Any) -> Config:
    config: Config = make_config(admin_api_keys=(ADMIN,))
    return config


@pytest.fixture
async def platform(make_client: MakeClient, admin_config: Config) -> Platform:
    return Platform(await make_client(admin_config, auth=False))


class TestAccountsApi:
    async def test_create_get_rename_list(self, platform: Platform) -> None:
        created = await platform.account("Acme")
        assert created["id"].startswith("acc_")
        assert created["name"] == "Acme"
        assert set(created) == {"id", "name", "created_at", "updated_at"}
        one = await platform.http.get(f"/api/accounts/{created['id']}", headers=bearer(ADMIN))
        assert one.json() == created
        renamed = await platform.http.patch(
            f"/api/accounts/{created['id']}", json={"name": "Acme Inc"}, headers=bearer(ADMIN)
        )
        assert renamed.status_code == 200
        assert renamed.json()["name"] == "Acme Inc"
        listed = await platform.http.get("/api/accounts", headers=bearer(ADMIN))
        # API_KEYS is set: the built-in default account is listed too (by id: after the
        # time-ordered ids of created accounts).
        assert [a["id"] for a in listed.json()["accounts"]] == [created["id"], DEFAULT_ACCOUNT]

    async def test_paging_follows_creation_order(self, platform: Platform) -> None:
        made = [(await platform.account(f"A{n}"))["id"] for n in range(5)]
        seen: list[str] = []
        url: str | None = "/api/accounts?limit=2"
        while url:
            response = await platform.http.get(url, headers=bearer(ADMIN))
            seen += [a["id"] for a in response.json()["accounts"]]
            url = response.links.get("next", {}).get("url")
        # The test clock stands still: within one millisecond, ids order at random.
        assert seen == [*sorted(made), DEFAULT_ACCOUNT]

    @pytest.mark.parametrize(
        ("body", "field"), [({}, "name"), ({"name": ""}, "name"), ({"name": "x", "y": 1}, "y")]
    )
    async def test_a_bad_body_is_a_422_naming_the_field(
        self, platform: Platform, body: dict[str, Any], field: str
    ) -> None:
        response = await platform.http.post("/api/accounts", json=body, headers=bearer(ADMIN))
        assert response.status_code == 422
        assert response.json()["error"]["field"] == field

    async def test_missing_accounts_are_404(self, platform: Platform) -> None:
        for path in ("/api/accounts/acc_nope", "/api/accounts/not-an-id"):
            response = await platform.http.get(path, headers=bearer(ADMIN))
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"

    async def test_account_keys_cannot_use_the_admin_api(self, platform: Platform) -> None:
        account_id, own = await platform.customer()
        for method, path in (
            ("GET", "/api/accounts"),
            ("POST", f"/api/accounts/{account_id}/keys"),
            ("DELETE", f"/api/accounts/{account_id}"),
        ):
            response = await platform.http.request(method, path, headers=own)
            assert response.status_code == 403, (method, path)
            assert response.json()["error"]["code"] == "forbidden"
        default = await platform.http.get("/api/accounts", headers=bearer(API_KEY))
        assert default.status_code == 403
        assert (await platform.http.get("/api/accounts")).status_code == 401

    async def test_the_default_account_stays_while_api_keys_use_it(
        self, platform: Platform
    ) -> None:
        response = await platform.http.delete(
            f"/api/accounts/{DEFAULT_ACCOUNT}", headers=bearer(ADMIN)
        )
        assert response.status_code == 409


class TestKeys:
    async def test_a_key_is_shown_once_and_listed_without_it(
        self, platform: Platform, fake_redis: Redis
    ) -> None:
        account = await platform.account()
        response = await platform.http.post(
            f"/api/accounts/{account['id']}/keys", headers=bearer(ADMIN)
        )
        created = response.json()
        assert created["id"].startswith("key_")
        assert created["key"].startswith("mh_")
        assert created["prefix"] == created["key"][:11]
        listed = await platform.http.get(
            f"/api/accounts/{account['id']}/keys", headers=bearer(ADMIN)
        )
        [entry] = listed.json()["keys"]
        assert entry == {
            "id": created["id"],
            "prefix": created["prefix"],
            "created_at": created["created_at"],
        }
        assert created["key"] not in listed.text
        # Nowhere in Redis either: only its digest.
        for key in await fake_redis.keys("*"):
            if await fake_redis.type(key) == b"hash":
                values = await fake_redis.hvals(key)
                assert all(created["key"].encode() not in v for v in values)

    async def test_use_is_recorded_and_a_revoked_key_is_refused(self, platform: Platform) -> None:
        account_id, own = await platform.customer()
        assert (await platform.http.get("/api/webhooks/manage", headers=own)).status_code == 200
        [entry] = (
            await platform.http.get(f"/api/accounts/{account_id}/keys", headers=bearer(ADMIN))
        ).json()["keys"]
        assert entry["last_used_at"] is not None
        gone = await platform.http.delete(
            f"/api/accounts/{account_id}/keys/{entry['id']}", headers=bearer(ADMIN)
        )
        assert gone.status_code == 204
        refused = await platform.http.get("/api/webhooks/manage", headers=own)
        assert refused.status_code == 401
        again = await platform.http.delete(
            f"/api/accounts/{account_id}/keys/{entry['id']}", headers=bearer(ADMIN)
        )
        assert again.status_code == 404

    async def test_unknown_and_malformed_keys_are_401(self, platform: Platform) -> None:
        for token in ("mh_" + "A" * 43, "nonsense-but-long-enough", "mh_"):
            response = await platform.http.get("/api/webhooks/manage", headers=bearer(token))
            assert response.status_code == 401


class TestScoping:
    async def test_each_account_sees_only_its_own_webhooks(self, platform: Platform) -> None:
        _, acme = await platform.customer("Acme")
        _, globex = await platform.customer("Globex")
        mine = (await platform.http.post("/api/webhooks/manage", json=HOOK, headers=acme)).json()
        theirs = (
            await platform.http.post("/api/webhooks/manage", json=HOOK, headers=globex)
        ).json()
        listed = (await platform.http.get("/api/webhooks/manage", headers=acme)).json()
        assert [w["id"] for w in listed["webhooks"]] == [mine["id"]]
        one = f"/api/webhooks/manage/{theirs['id']}"
        missing = f"/api/webhooks/manage/{theirs['id'] + 100}"
        for method, suffix, body in (
            ("GET", "", None),
            ("PATCH", "", {"active": False}),
            ("DELETE", "", None),
            ("GET", "/deliveries", None),
            ("GET", "/deliveries/dlv_1-0_1", None),
            ("POST", "/deliveries/dlv_1-0_1/retry", None),
            ("POST", "/recover", {"since": "2026-01-01T00:00:00Z"}),
            ("POST", "/test", {"type": "email.open"}),
        ):
            other = await platform.http.request(method, one + suffix, json=body, headers=acme)
            absent = await platform.http.request(method, missing + suffix, json=body, headers=acme)
            assert other.status_code == absent.status_code == 404, (method, suffix)
            # The same answer as for a webhook that does not exist, but for the id itself.
            assert other.json()["error"]["code"] == absent.json()["error"]["code"]
        # Still there, unchanged, for its owner.
        kept = await platform.http.get(one, headers=globex)
        assert kept.status_code == 200
        assert kept.json()["active"] is True

    async def test_an_admin_key_acts_inside_an_account_with_x_account_id(
        self, platform: Platform
    ) -> None:
        account_id, own = await platform.customer()
        made = await platform.http.post(
            "/api/webhooks/manage", json=HOOK, headers=bearer(ADMIN, account_id)
        )
        assert made.status_code == 201
        listed = (await platform.http.get("/api/webhooks/manage", headers=own)).json()
        assert [w["id"] for w in listed["webhooks"]] == [made.json()["id"]]
        without = await platform.http.get("/api/webhooks/manage", headers=bearer(ADMIN))
        assert without.status_code == 400
        assert without.json()["error"]["code"] == "account_required"
        unknown = await platform.http.get("/api/webhooks/manage", headers=bearer(ADMIN, "acc_nope"))
        assert unknown.status_code == 404

    async def test_the_webhook_limit_is_a_409(
        self, make_client: MakeClient, make_config: Any
    ) -> None:
        config = make_config(admin_api_keys=(ADMIN,), max_webhooks_per_account=2)
        platform = Platform(await make_client(config, auth=False))
        _, own = await platform.customer()
        for _ in range(2):
            assert (
                await platform.http.post("/api/webhooks/manage", json=HOOK, headers=own)
            ).status_code == 201
        refused = await platform.http.post("/api/webhooks/manage", json=HOOK, headers=own)
        assert refused.status_code == 409
        assert "MAX_WEBHOOKS_PER_ACCOUNT" in refused.json()["error"]["message"]
        _, other = await platform.customer("Other")
        assert (
            await platform.http.post("/api/webhooks/manage", json=HOOK, headers=other)
        ).status_code == 201

    async def test_status_is_for_operators(self, platform: Platform) -> None:
        _, own = await platform.customer()
        assert (await platform.http.get("/api/status", headers=own)).status_code == 403
        for headers in (bearer(ADMIN), bearer(API_KEY)):
            assert (await platform.http.get("/api/status", headers=headers)).status_code in (
                200,
                503,
            )


class TestEmails:
    async def test_registration_is_idempotent_and_never_moves_an_email(
        self, platform: Platform, fake_redis: Redis
    ) -> None:
        _, acme = await platform.customer("Acme")
        _, globex = await platform.customer("Globex")
        body = {"email_ids": ["msg_1", "msg_2", "msg_1"]}
        first = await platform.http.post("/api/emails", json=body, headers=acme)
        assert first.status_code == 200
        assert first.json()["registered"] == 2
        assert first.json()["conflicts"] == []
        again = await platform.http.post("/api/emails", json=body, headers=acme)
        assert again.json()["registered"] == 2
        taken = await platform.http.post(
            "/api/emails", json={"email_ids": ["msg_2", "msg_3"]}, headers=globex
        )
        assert taken.json()["registered"] == 1
        assert taken.json()["conflicts"] == ["msg_2"]
        ttl = await fake_redis.pttl(next(iter(await fake_redis.keys("mh:email-owner:*"))))
        assert 29 * 86400_000 < ttl <= 30 * 86400_000

    @pytest.mark.parametrize(
        "body", [{"email_ids": []}, {"email_ids": ["x"] * 1001}, {"email_ids": [""]}, {}]
    )
    async def test_bad_bodies_are_422(self, platform: Platform, body: dict[str, Any]) -> None:
        _, own = await platform.customer()
        response = await platform.http.post("/api/emails", json=body, headers=own)
        assert response.status_code == 422
        assert response.json()["error"]["field"].startswith("email_ids")


class TestDelete:
    async def test_deleting_an_account_removes_what_it_owns(
        self, platform: Platform, fake_redis: Redis
    ) -> None:
        account_id, own = await platform.customer()
        hook = (await platform.http.post("/api/webhooks/manage", json=HOOK, headers=own)).json()
        await platform.http.post("/api/emails", json={"email_ids": ["msg_9"]}, headers=own)
        test = await platform.http.post(
            f"/api/webhooks/manage/{hook['id']}/test", json={}, headers=own
        )
        assert test.status_code == 202
        _, other = await platform.customer("Other")
        kept = (await platform.http.post("/api/webhooks/manage", json=HOOK, headers=other)).json()

        response = await platform.http.delete(f"/api/accounts/{account_id}", headers=bearer(ADMIN))
        assert response.status_code == 204
        assert (await platform.http.get("/api/webhooks/manage", headers=own)).status_code == 401
        assert (
            await platform.http.get(f"/api/accounts/{account_id}", headers=bearer(ADMIN))
        ).status_code == 404
        again = await platform.http.delete(f"/api/accounts/{account_id}", headers=bearer(ADMIN))
        assert again.status_code == 404
        left = {k.decode() for k in await fake_redis.keys("*")}
        assert not [k for k in left if account_id in k]
        assert keys.webhook(hook["id"]) not in left
        assert not [k for k in left if k.startswith("mh:email-owner:")]
        assert not [k for k in left if k.startswith("mh:delivery:")]
        assert keys.webhook(kept["id"]) in left  # another account's is untouched


class TestPartitioned:
    """The same API on Redis named for 16 partitions, which refuses any script, MULTI or
    multi-key command over two slots (CROSSSLOT) as a cluster does."""

    async def test_accounts_keys_webhooks_and_emails(
        self, make_client: MakeClient, admin_config: Config, partitioned_redis: Redis
    ) -> None:
        platform = Platform(await make_client(admin_config, redis=partitioned_redis, auth=False))
        partitions = keys.partitioning()
        acme_id, acme = await platform.customer("Acme")
        globex_id, globex = await platform.customer("Globex")
        while partitions.of_account(globex_id) == partitions.of_account(acme_id):
            globex_id, globex = await platform.customer("Globex")
        listed = (await platform.http.get("/api/accounts", headers=bearer(ADMIN))).json()
        assert {acme_id, globex_id} <= {a["id"] for a in listed["accounts"]}
        renamed = await platform.http.patch(
            f"/api/accounts/{acme_id}", json={"name": "Acme Corp"}, headers=bearer(ADMIN)
        )
        assert renamed.json()["name"] == "Acme Corp"

        mine = (await platform.http.post("/api/webhooks/manage", json=HOOK, headers=acme)).json()
        theirs = (
            await platform.http.post(
                "/api/webhooks/manage", json=HOOK, headers={**globex, "Idempotency-Key": "k1"}
            )
        ).json()
        replayed = await platform.http.post(
            "/api/webhooks/manage", json=HOOK, headers={**globex, "Idempotency-Key": "k1"}
        )
        assert replayed.json()["id"] == theirs["id"]
        # Each id names its account's partition.
        assert partitions.of_webhook(mine["id"]) == partitions.of_account(acme_id)
        assert partitions.of_webhook(theirs["id"]) == partitions.of_account(globex_id)
        one = f"/api/webhooks/manage/{mine['id']}"
        patched = await platform.http.patch(one, json={"events": "open"}, headers=acme)
        assert patched.status_code == 200, patched.text
        assert patched.json()["events"] == "open"
        rotated = await platform.http.post(one + "/secret/rotate", json={}, headers=acme)
        assert rotated.status_code == 200, rotated.text
        # Another account's webhook, in another partition, answers as a missing one.
        foreign = f"/api/webhooks/manage/{theirs['id']}"
        for method, suffix, body in (
            ("GET", "", None),
            ("PATCH", "", {"active": False}),
            ("DELETE", "", None),
            ("GET", "/deliveries", None),
            ("GET", f"/deliveries/dlv_1-0_{theirs['id']}", None),
            ("POST", f"/deliveries/dlv_1-0_{theirs['id']}/retry", None),
            ("POST", "/recover", {"since": "2026-01-01T00:00:00Z"}),
        ):
            response = await platform.http.request(
                method, foreign + suffix, json=body, headers=acme
            )
            assert response.status_code == 404, (method, suffix, response.text)
        for suffix in ("/deliveries/dlv_1-0_1", "/deliveries/not-a-delivery-id"):
            response = await platform.http.get(one + suffix, headers=acme)
            assert response.status_code == 404, (suffix, response.text)
        listed = await platform.http.get(one + "/deliveries", headers=acme)
        assert listed.json()["deliveries"] == []
        registered = await platform.http.post(
            "/api/emails", json={"email_ids": ["msg_1", "msg_2"]}, headers=acme
        )
        assert registered.json()["registered"] == 2
        taken = await platform.http.post(
            "/api/emails", json={"email_ids": ["msg_2", "msg_3"]}, headers=globex
        )
        assert taken.json()["conflicts"] == ["msg_2"]

        names = await assert_tagged_of(partitioned_redis, acme_id, globex_id)
        assert keys.webhook(mine["id"]) in in_partition(names, partitions.of_account(acme_id))
        assert keys.account(globex_id) in in_partition(names, partitions.of_account(globex_id))

        assert (await platform.http.delete(one, headers=acme)).status_code == 204
        [key] = (
            await platform.http.get(f"/api/accounts/{acme_id}/keys", headers=bearer(ADMIN))
        ).json()["keys"]
        revoked = await platform.http.delete(
            f"/api/accounts/{acme_id}/keys/{key['id']}", headers=bearer(ADMIN)
        )
        assert revoked.status_code == 204
        assert (await platform.http.get("/api/webhooks/manage", headers=acme)).status_code == 401
        gone = await platform.http.delete(f"/api/accounts/{globex_id}", headers=bearer(ADMIN))
        assert gone.status_code == 204
        left = await key_names(partitioned_redis)
        assert not [name for name in left if globex_id in name]
        assert keys.webhook(theirs["id"]) not in left


async def assert_tagged_of(redis: Redis, *accounts: str) -> set[str]:
    """The keys of the accounts and their webhooks carry their partition's tag (other keys,
    of the event log, are another part's)."""
    names = await key_names(redis)
    mine = {
        name
        for name in names
        if any(a in name for a in accounts) or ":webhook:" in name or ":subscribers:" in name
    }
    assert not [name for name in mine if not name.startswith("mh:{")]
    return names
