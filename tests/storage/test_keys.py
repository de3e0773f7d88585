"""service.storage.keys: the event log's names, as before partitions with one, tagged by the
account's partition with several; and no code names them without their partition."""

from __future__ import annotations

import pathlib
import re

import pytest

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.partitions import Partitioning
from service.storage import keys

ACME = "acc_0kx8q2m4n1a7b3c9d2e5"  # partition 4 of 16
ROOT = pathlib.Path(__file__).parents[2]


def test_one_partition_keeps_the_names_from_before_partitions() -> None:
    assert keys.events_stream(0) == keys.EVENTS_STREAM == "mh:events"
    assert keys.dead_letters(0) == keys.DEAD_LETTERS == "mh:events:dead"
    assert keys.inbound_counts(0) == keys.INBOUND_COUNTS == "mh:inbound:counts"
    assert keys.seen("sendgrid", "abc", 0) == "mh:seen:sendgrid:abc"
    assert keys.events_by_email("msg_1", 0) == "mh:events:email:msg_1"
    assert keys.events_by_recipient("A@B.example", 0) == "mh:events:recipient:a@b.example"
    assert keys.events_by_account(ACME) == f"mh:events:account:{ACME}"
    assert keys.suppressions(ACME) == f"mh:account:{ACME}:suppressions"
    assert keys.suppressed(ACME, "complaint") == f"mh:account:{ACME}:suppressed:complaint"


@pytest.fixture
def sixteen() -> object:
    keys.use(Partitioning(16))
    yield
    keys.use(Partitioning(1))


@pytest.mark.usefixtures("sixteen")
def test_several_partitions_tag_every_key_of_the_event_log() -> None:
    tag = keys.in_partition(4)
    assert tag.startswith("mh:{p4.")
    assert keys.events_stream(4) == tag + "events"
    assert keys.dead_letters(4) == tag + "events:dead"
    assert keys.seen("sendgrid", "abc", 4) == tag + "seen:sendgrid:abc"
    assert keys.events_by_email("msg_1", 4) == tag + "events:email:msg_1"
    # An account's own keys follow from its id.
    assert keys.events_by_account(ACME) == tag + f"events:account:{ACME}"
    assert keys.suppressions(ACME) == tag + f"account:{ACME}:suppressions"
    assert keys.suppressed(ACME, "manual") == tag + f"account:{ACME}:suppressed:manual"
    # Unrouted events, in partition 0, name the default account's index there (never written).
    assert keys.events_by_account(DEFAULT_ACCOUNT, 0).startswith(keys.in_partition(0))


def test_no_code_names_the_event_log_without_its_partition() -> None:
    """The constants are the names with one partition (tests of a single Redis use them);
    the service, the worker and the benchmarks name keys with the functions."""
    constant = re.compile(r"keys\.(EVENTS_STREAM|DEAD_LETTERS|INBOUND_COUNTS)\b")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("service", "worker", "bench")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if constant.search(line)
    ]
    assert found == []
