"""Which webhook ids a migration carries over, and where the new sequences start."""

from __future__ import annotations

import pytest

from service.core.migration import id_ceiling, keeps_id, sequence_floor
from service.core.partitions import Partitioning

SIXTEEN = Partitioning(16)


class TestKeepsId:
    def test_an_id_naming_its_accounts_partition_is_kept(self) -> None:
        account = "acc_0kx8q2m4n1a7b3c9d2e5"
        partition = SIXTEEN.of_account(account)
        assert keeps_id(16 + partition, account, SIXTEEN, ceiling=100)
        assert not keeps_id(16 + (partition + 1) % 16, account, SIXTEEN, ceiling=100)

    def test_an_id_above_the_first_runs_ceiling_is_never_kept(self) -> None:
        # Issued by the source after the first run: the target may have issued it too.
        account = "acc_0kx8q2m4n1a7b3c9d2e5"
        assert not keeps_id(160 + SIXTEEN.of_account(account), account, SIXTEEN, ceiling=100)

    def test_one_partition_keeps_every_id(self) -> None:
        assert all(keeps_id(i, "acc_x", Partitioning(1), ceiling=50) for i in range(1, 51))


class TestSequences:
    def test_the_ceiling_is_the_highest_id_any_partition_issued(self) -> None:
        assert id_ceiling({0: 7}, Partitioning(1)) == 7
        assert id_ceiling({0: 2, 5: 3}, SIXTEEN) == 3 * 16 + 5
        assert id_ceiling({}, SIXTEEN) == 0

    @pytest.mark.parametrize("count", [1, 3, 16])
    @pytest.mark.parametrize("ceiling", [0, 1, 15, 16, 17, 1000])
    def test_every_id_issued_after_the_floor_is_above_the_ceiling(
        self, count: int, ceiling: int
    ) -> None:
        target = Partitioning(count)
        floor = sequence_floor(ceiling, target)
        assert all(target.webhook_id(floor + 1, p) > ceiling for p in target.all())
        # and the floor is the least such: one lower would issue an id at or below it
        if floor:
            assert any(target.webhook_id(floor, p) <= ceiling for p in target.all())
