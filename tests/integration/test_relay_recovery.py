"""Nothing is lost when a relay or a whole worker dies: another worker finishes the job.

These tests use their own Redis database so the session worker cannot help out.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from config_core import ConfigService
from config_core.state.events import DISPATCH_GROUP, outbox_key
from tests.conftest import redis_url
from tests.fakes.discord import FakeDiscord
from tests.integration.conftest import FAST_RECOVERY, RECOVERY_DB
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration



async def delivered_count(service: ConfigService, event_ids: list[str]) -> int:
    records = await asyncio.gather(*(service.get_deliveries(e) for e in event_ids))
    return sum(1 for rs in records if rs and all(r["status"] == "delivered" for r in rs))


async def wait_all_delivered(service: ConfigService, event_ids: list[str],
                             timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await delivered_count(service, event_ids) == len(event_ids):
            return
        await asyncio.sleep(0.2)
    done = await delivered_count(service, event_ids)
    raise AssertionError(f"only {done}/{len(event_ids)} events delivered in {timeout_s}s")


async def test_relay_died_with_entries_pending__another_worker_claims_them(
        lonely_service: ConfigService, discord_fake: FakeDiscord, tmp_path: Path) -> None:
    # Given Discord configured and 40 changes waiting in the outbox, no worker running
    svc = lonely_service
    await svc.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    ids = [(await svc.set_config(f"app.k{i}", i)).event_id for i in range(40)]
    # And a relay that read 15 entries and died before publishing or acknowledging them
    raw = redis.Redis.from_url(redis_url(RECOVERY_DB), decode_responses=True)
    raw.xgroup_create(outbox_key(svc.namespace), DISPATCH_GROUP, id="0")
    taken = raw.xreadgroup(DISPATCH_GROUP, "dead-relay", {outbox_key(svc.namespace): ">"}, count=15)
    assert len(taken[0][1]) == 15
    # When a real worker starts
    worker = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
    try:
        worker.wait_ready()
        # Then every change is delivered, and the outbox is empty with nothing pending
        await wait_all_delivered(svc, ids, timeout_s=45)
        assert raw.xlen(outbox_key(svc.namespace)) == 0
        assert raw.xpending(outbox_key(svc.namespace), DISPATCH_GROUP)["pending"] == 0
        assert "claimed 15 entries" in worker.log()
    finally:
        worker.stop()
    keys = {f["value"] for m in discord_fake.messages() for f in m["embeds"][0]["fields"]
            if f["name"] == "Key"}
    assert {f"app.k{i}" for i in range(40)} <= keys


async def test_worker_sigkilled_mid_batch__next_worker_finishes_each_once_or_dead_with_reason(
        lonely_service: ConfigService, tmp_path: Path) -> None:
    # Given a slow vendor, 80 changes, and a worker busy delivering them
    svc = lonely_service
    with FakeDiscord(delay_s=0.15) as fake:
        await svc.set_config("integrations.discord", {"webhook_url": fake.add_webhook()})
        first = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
        second: WorkerProcess | None = None
        try:
            first.wait_ready()
            ids = [(await svc.set_config(f"app.k{i}", i)).event_id for i in range(80)]
            fake.wait_for_messages(5, timeout_s=30)
            # When the whole worker (main process, relay, pool) is SIGKILLed mid-batch
            first.kill()
            assert await delivered_count(svc, ids) < len(ids)
            second = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
            second.wait_ready()
            # Then the second worker finishes every change: unacked tasks come back
            rows = await wait_all_finished(svc, ids, timeout_s=90)
        finally:
            first.stop()
            if second is not None:
                second.stop()
        # And each is posted exactly once, except those whose sender died mid-request: they
        # are dead with the reason (at most one per pool process), never posted twice
        sent = Counter(f["value"] for m in fake.messages() for f in m["embeds"][0]["fields"]
                       if f["name"] == "Key")
        dead = {key: row for key, row in rows.items() if row["status"] == "dead"}
        assert max(sent.values()) == 1
        assert all(sent[key] == 1 for key, row in rows.items() if row["status"] == "delivered")
        assert len(dead) <= 2
        assert all("outcome unknown" in row["last_error"] for row in dead.values())


async def wait_all_finished(service: ConfigService, event_ids: list[str], timeout_s: float
                            ) -> dict[str, dict[str, object]]:
    """Wait until every event's only delivery is over; its row by the event's key."""
    deadline = time.monotonic() + timeout_s
    rows: list[list[dict[str, object]]] = []
    while time.monotonic() < deadline:
        rows = list(await asyncio.gather(*(service.get_deliveries(e) for e in event_ids)))
        if all(r and r[0]["status"] in ("delivered", "dead") for r in rows):
            return {f"app.k{i}": r[0] for i, r in enumerate(rows)}
        await asyncio.sleep(0.2)
    raise AssertionError(f"not all finished in {timeout_s}s: {[r[0]['status'] for r in rows]}")
