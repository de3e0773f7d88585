"""Account ids, API key material and the routing rule, without Redis."""

from __future__ import annotations

import pytest

from service.core.accounts import (
    DEFAULT_ACCOUNT,
    account_tag,
    api_key_digest,
    indexed_account,
    is_account_id,
    is_key_id,
    looks_like_account_key,
    new_account_id,
    new_api_key,
    new_key_id,
    route,
    shown_prefix,
)
from service.core.models import Event


def event(**fields: object) -> Event:
    return Event(
        type="email.open",
        email_id="msg_1",
        occurred_at="2026-03-03T10:00:00Z",
        provider="generic",
        **fields,  # type: ignore[arg-type]
    )


class TestIds:
    def test_account_ids_sort_by_creation_and_differ_by_entropy(self) -> None:
        early = new_account_id(1_772_532_000_000, b"\x00" * 7)
        later = new_account_id(1_772_532_000_001, b"\x00" * 7)
        assert early < later
        assert early != new_account_id(1_772_532_000_000, b"\x01" * 7)
        assert early.startswith("acc_")
        assert len(early) == 24
        assert is_account_id(early)
        assert is_account_id(DEFAULT_ACCOUNT)

    @pytest.mark.parametrize(
        "value", ["", "acc_", "acme", "acc_UPPER", "acc_a b", "acc_" + "a" * 41, 7, None]
    )
    def test_what_cannot_name_an_account(self, value: object) -> None:
        assert not is_account_id(value)

    def test_key_ids(self) -> None:
        key_id = new_key_id(5, b"\x07" * 7)
        assert is_key_id(key_id)
        assert not is_key_id("acc_" + key_id[4:])


class TestKeys:
    def test_a_key_is_prefixed_url_safe_and_stored_only_as_its_digest(self) -> None:
        key = new_api_key(bytes(range(32)))
        assert key.startswith("mh_")
        assert len(key) == 46
        assert set(key[3:]) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        digest = api_key_digest(key)
        assert len(digest) == 64
        assert key not in digest
        assert api_key_digest(key) == digest  # looked up by it
        assert shown_prefix(key) == key[:11]
        assert looks_like_account_key(key)
        assert not looks_like_account_key("x" * 20)

    def test_too_little_entropy_is_refused(self) -> None:
        with pytest.raises(ValueError, match="entropy"):
            new_api_key(b"short")


class TestTag:
    def test_the_generic_formats_field_comes_first(self) -> None:
        tagged = event(account_id="acc_a", metadata={"account_id": "acc_b"})
        assert account_tag(tagged, "account_id") == "acc_a"

    @pytest.mark.parametrize(
        ("metadata", "expected"),
        [
            ({"account_id": "acc_a"}, "acc_a"),
            ({"account_id": " acc_a "}, "acc_a"),
            ({"account_id": ["acc_a"]}, "acc_a"),  # SES tags are lists
            ({"account_id": ["acc_a", "acc_b"]}, "['acc_a', 'acc_b']"),  # named, but badly
            ({"account_id": 7}, "7"),
            ({"account_id": ""}, None),
            ({"other": "acc_a"}, None),
            ({"tags": ["news", "account_id:acc_a"]}, "acc_a"),  # string tags only
            ({"tags": ["account_id=acc_a"]}, "acc_a"),
            ({"tags": ["account_idx:acc_a", 7]}, None),
            ({"tags": "account_id:acc_a"}, None),
            (None, None),
        ],
    )
    def test_metadata(self, metadata: dict[str, object] | None, expected: str | None) -> None:
        assert account_tag(event(metadata=metadata), "account_id") == expected

    def test_the_key_is_configurable(self) -> None:
        assert account_tag(event(metadata={"tenant": "acc_a"}), "tenant") == "acc_a"


class TestRoute:
    @pytest.mark.parametrize(
        ("tag", "tag_exists", "owner", "single", "expected"),
        [
            ("acc_a", True, None, False, "acc_a"),
            ("acc_a", True, "acc_b", True, "acc_a"),  # a tag wins over a registration
            ("acc_x", False, "acc_b", True, None),  # a tag of no account: nowhere, not default
            (None, False, "acc_b", False, "acc_b"),
            (None, False, None, True, DEFAULT_ACCOUNT),
            (None, False, None, False, None),  # unrouted
        ],
    )
    def test_rule(
        self, tag: str | None, tag_exists: bool, owner: str | None, single: bool, expected: str
    ) -> None:
        assert (
            route(
                tag,
                tag_exists=tag_exists,
                owner=owner,
                owner_exists=owner is not None,
                single_account=single,
            )
            == expected
        )

    def test_only_other_accounts_have_an_event_index(self) -> None:
        assert indexed_account("acc_a")
        assert not indexed_account(DEFAULT_ACCOUNT)
        assert not indexed_account(None)
