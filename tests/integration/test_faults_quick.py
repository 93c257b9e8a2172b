"""The quick fault scenarios, with a small burst: nothing lost, nothing twice, no secret out.

``make faults`` runs every scenario with 2,000 changes and writes docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.scenarios import ALL, QUICK

pytestmark = pytest.mark.integration

CHANGES = 60


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", QUICK)
async def test_fault__quick_scenario__every_delivery_once_or_dead_with_reason(
        name: str, tmp_path: Path, redis_server: str) -> None:
    counts = await ALL[name](tmp_path, CHANGES)
    assert counts.changes == CHANGES
    assert counts.delivered + counts.dead == counts.deliveries == 2 * CHANGES
    assert (counts.lost, counts.duplicates, counts.secrets) == (0, 0, []), counts
    assert counts.figures["task args scanned"] >= CHANGES  # the scan saw the tasks
