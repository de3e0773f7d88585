import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from service.core.partitions import Partitioning, tags


def test_one_partition_has_no_tag_and_keeps_webhook_ids_consecutive() -> None:
    one = Partitioning(1)
    assert one.prefix(0) == ""
    assert [one.webhook_id(n, 0) for n in (1, 2, 3)] == [1, 2, 3]
    assert one.of_account("acc_x") == one.of_webhook(7) == 0


@pytest.mark.parametrize("count", [2, 3, 16, 64, 1024])
def test_tags_spread_evenly_over_the_slots(count: int) -> None:
    slots = [key_slot(tag.encode()) for tag in tags(count)]
    share = REDIS_CLUSTER_HASH_SLOTS / count
    assert [int(slot // share) for slot in slots] == list(range(count))


def test_a_webhook_id_names_its_partition_and_a_delivery_its_webhooks() -> None:
    parts = Partitioning(16)
    account = "acc_01HZY"
    partition = parts.of_account(account)
    ids = [parts.webhook_id(n, partition) for n in (1, 2, 3)]
    assert len(set(ids)) == 3
    assert {parts.of_webhook(i) for i in ids} == {partition}
    assert parts.of_delivery(f"dlv_1700000000000-3_{ids[1]}") == partition
    assert parts.prefix(partition) == "{" + tags(16)[partition] + "}:"


def test_unrouted_events_live_in_partition_zero() -> None:
    assert Partitioning(16).of_account(None) == Partitioning(16).of_account("") == 0


@pytest.mark.parametrize("count", [0, 1025])
def test_counts_out_of_range_are_refused(count: int) -> None:
    with pytest.raises(ValueError, match="partitions"):
        Partitioning(count)
