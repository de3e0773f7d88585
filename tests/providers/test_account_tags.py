"""Every provider's own metadata field names an event's account (docs/accounts.md): a sample of
each, tagged the provider's way, normalised, routes to the account it names."""

from __future__ import annotations

import copy
import json
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from service.core.accounts import account_tag
from service.core.models import Event
from service.providers.registry import BY_NAME
from tests import FIXTURES
from tests.signers import SnsSigner, mailgun_body, mandrill_request, sns_request

ACC = "acc_0kx8q2m4n1a7b3c9d2e5"
SAMPLES = FIXTURES / "providers"


def sample(path: str) -> Any:
    return json.loads((SAMPLES / path).read_text())


def generic(account: str = ACC) -> bytes:
    return json.dumps({"type": "email.opened", "email_id": "m1", "account_id": account}).encode()


def resend(account: str = ACC) -> bytes:
    body = sample("resend/open.json")
    body["data"]["tags"] = {"account_id": account}
    return json.dumps(body).encode()


def resend_tag_list(account: str = ACC) -> bytes:
    body = sample("resend/open.json")
    body["data"]["tags"] = [{"name": "account_id", "value": account}]
    return json.dumps(body).encode()


def sendgrid(account: str = ACC) -> bytes:
    [event] = sample("sendgrid/open.json")
    event["account_id"] = account  # a custom arg: a top-level field of the event
    return json.dumps([event]).encode()


def mailgun(account: str = ACC) -> bytes:
    data = sample("mailgun/opened.event-data.json")
    data["user-variables"] = {"account_id": account}
    return mailgun_body(data, time.time())


def mailgun_legacy(account: str = ACC) -> bytes:
    fields = {"event": "opened", "Message-Id": "<m1@example.com>", "recipient": "a@example.com",
              "timestamp": str(int(time.time())), "token": "t" * 50, "signature": "0" * 64,
              "account_id": account}  # fmt: skip
    return urllib.parse.urlencode(fields).encode()


def postmark(account: str = ACC) -> bytes:
    body = sample("postmark/open.json")
    body["Metadata"] = {"account_id": account}
    return json.dumps(body).encode()


def sparkpost(account: str = ACC) -> bytes:
    batch = sample("sparkpost/delivery.json")
    batch[0]["msys"]["message_event"]["rcpt_meta"] = {"account_id": account}
    return json.dumps(batch).encode()


def mailjet(account: str = ACC) -> bytes:
    body = sample("mailjet/open.json")
    body["Payload"] = json.dumps({"account_id": account})
    return json.dumps(body).encode()


def brevo(account: str = ACC) -> bytes:
    body = sample("brevo/opened.json")
    body["X-Mailin-custom"] = json.dumps({"account_id": account})
    return json.dumps(body).encode()


def mandrill(account: str = ACC) -> bytes:
    event = sample("mandrill/open.json")
    event["msg"]["metadata"] = {"account_id": account}
    body, _ = mandrill_request([event])
    return body


def mailersend(account: str = ACC) -> bytes:
    body = copy.deepcopy(sample("mailersend/v2_opened.json"))
    body["data"]["tags"] = ["newsletter", f"account_id:{account}"]
    return json.dumps(body).encode()


def ses(account: str = ACC) -> bytes:
    message = sample("amazon_ses/open.json")
    message["mail"]["tags"]["account_id"] = [account]  # SES tags are lists
    notification = SnsSigner().notification(message, datetime.now(UTC))
    body, _ = sns_request(notification)
    return body


def postal(account: str = ACC) -> bytes:
    body = sample("postal/message_loaded.json")
    body["payload"]["message"]["tag"] = f"account_id:{account}"  # Postal has one string tag
    return json.dumps(body).encode()


TAGGED: dict[str, tuple[str, Callable[..., bytes]]] = {
    "generic": ("generic", generic),
    "resend": ("resend", resend),
    "resend, tag list": ("resend", resend_tag_list),
    "sendgrid": ("sendgrid", sendgrid),
    "mailgun": ("mailgun", mailgun),
    "mailgun legacy": ("mailgun", mailgun_legacy),
    "postmark": ("postmark", postmark),
    "sparkpost": ("sparkpost", sparkpost),
    "mailjet": ("mailjet", mailjet),
    "brevo": ("brevo", brevo),
    "mandrill": ("mandrill", mandrill),
    "mailersend": ("mailersend", mailersend),
    "ses": ("ses", ses),
    "postal": ("postal", postal),
}


@pytest.mark.parametrize("case", sorted(TAGGED))
def test_each_providers_metadata_names_the_account(case: str) -> None:
    provider, build = TAGGED[case]
    normalized = BY_NAME[provider].normalize(build(), {}, received_at="2026-03-03T10:00:00Z")
    events = [item for item in normalized if isinstance(item, Event)]
    assert events, normalized
    assert {account_tag(event, "account_id") for event in events} == {ACC}


def test_every_provider_has_a_case() -> None:
    assert {provider for provider, _ in TAGGED.values()} == set(BY_NAME)
