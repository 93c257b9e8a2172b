"""Urgency survives a backlog: a high change overtakes thousands of waiting low ones, in the
outbox and in the Celery queues, with real workers and a loopback Discord.

Positions, not times: each test asserts where the high change's message falls among the
messages the vendor received, while thousands of low changes written before it still wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import ConfigService
from config_core.state import events
from tests.conftest import redis_url
from tests.fakes.discord import FakeDiscord
from tests.integration.conftest import RECOVERY_DB, wait_for_deliveries
from tests.integration.polling import until
from tests.integration.workerproc import WorkerProcess

LOW_BACKLOG = 2000
"""Low changes written before the high one."""

OVERTAKE_BOUND = 30
"""Most low messages the vendor may receive before the high one: one low batch being
dispatched when it arrives (``outbox_reader.READ_BATCH``) and the tasks in the pool's hands."""

TRIGGERS = {
    "bulk": {"patterns": ["bulk.*"], "connectors": ["discord"], "urgency": "low"},
    "urgent": {"patterns": ["urgent.*"], "connectors": ["discord"], "urgency": "high"},
}


@pytest.fixture
def raw(redis_server: str) -> Iterator[redis.Redis]:
    """The recovery database, emptied: no session worker reads it."""
    client = redis.Redis.from_url(redis_url(RECOVERY_DB), decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
async def svc(raw: redis.Redis, tenant: str, discord_fake: FakeDiscord) -> Any:
    service = ConfigService(redis_url=redis_url(RECOVERY_DB), environment="production",
                            tenant=tenant)
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await service.set_config("integrations.notifications", {"triggers": TRIGGERS})
    yield service
    await service.close()


async def write_low_backlog(svc: ConfigService) -> None:
    for start in range(0, LOW_BACKLOG, 100):
        await asyncio.gather(*(svc.set_config(f"bulk.item{i}", i)
                               for i in range(start, start + 100)))


def message_keys(fake: FakeDiscord) -> list[str]:
    """The ``Key`` field of every message received, in arrival order."""
    keys = []
    for message in fake.messages():
        fields = message["embeds"][0]["fields"]
        keys.append(next(f["value"] for f in fields if f["name"] == "Key"))
    return keys


def start(tmp_path: Path, name: str, queues: str, urgencies: str = "") -> WorkerProcess:
    env = {"APGCFG_RELAY_URGENCIES": urgencies} if urgencies else {}
    return WorkerProcess(redis_url(RECOVERY_DB), tmp_path, prefix=name, queues=queues,
                         extra_env=env).wait_ready()


def low_waiting(raw: redis.Redis, svc: ConfigService) -> int:
    """Low changes not yet delivered: in the outbox, or queued as Celery tasks."""
    return raw.xlen(events.outbox_key(svc.namespace, "low")) + raw.llen("low")


async def assert_overtook(svc: ConfigService, fake: FakeDiscord, event_id: str,
                          delivered_before: int) -> None:
    """The high change's message came at most ``OVERTAKE_BOUND`` low messages after the
    ``delivered_before`` that had arrived when it was written."""
    await wait_for_deliveries(svc, event_id, lambda rows: rows[0]["status"] == "delivered",
                              timeout_s=60)
    keys = message_keys(fake)
    overtaken_by = keys.index("urgent.db.failover") - delivered_before
    assert overtaken_by <= OVERTAKE_BOUND, (
        f"{overtaken_by} low messages arrived before the high one, out of {len(keys)}")


async def single_worker_delivers_first(tmp_path: Path, svc: ConfigService,
                                       discord_fake: FakeDiscord, event_id: str) -> None:
    """Start one worker for every queue and urgency; the high change must overtake the
    backlog written before it."""
    worker = start(tmp_path, "single", "high,medium,low")
    try:
        await assert_overtook(svc, discord_fake, event_id, 0)
    finally:
        worker.stop()


async def test_urgency__low_backlog_in_outbox__high_change_delivered_first(
        svc: ConfigService, raw: redis.Redis, discord_fake: FakeDiscord,
        tmp_path: Path) -> None:
    # Given 2,000 low changes waiting in the outbox, and then a high one, no worker running
    await write_low_backlog(svc)
    high = await svc.set_config("urgent.db.failover", "replica-2")
    assert low_waiting(raw, svc) == LOW_BACKLOG
    # When one worker (every queue, a relay for every urgency) starts
    # Then the high change reaches Discord ahead of (nearly) all of the low backlog
    await single_worker_delivers_first(tmp_path, svc, discord_fake, str(high.event_id))


async def test_urgency__low_backlog_in_celery_queue__high_task_runs_first(
        svc: ConfigService, raw: redis.Redis, discord_fake: FakeDiscord,
        tmp_path: Path) -> None:
    # Given 2,000 low delivery tasks in the Celery queue (relayed by a worker that consumes
    # only the medium queue), and then a high one
    relay_only = start(tmp_path, "relay", "medium")
    try:
        await write_low_backlog(svc)
        until("low tasks queued", lambda: raw.llen("low") >= LOW_BACKLOG)
        high = await svc.set_config("urgent.db.failover", "replica-2")
        until("high task queued", lambda: raw.llen("high") == 1)
    finally:
        relay_only.stop()
    assert raw.llen("low") == LOW_BACKLOG and discord_fake.messages() == []
    # When a worker consuming every queue starts
    # Then it runs the high task before (nearly) all of the low ones queued before it
    await single_worker_delivers_first(tmp_path, svc, discord_fake, str(high.event_id))


async def test_urgency__recommended_deployment__high_worker_never_behind_low(
        svc: ConfigService, raw: redis.Redis, discord_fake: FakeDiscord,
        tmp_path: Path) -> None:
    # Given the recommended deployment: a worker (and relay) for high alone, one for the rest,
    # busy with 2,000 low changes
    high_worker = start(tmp_path, "high", "high", urgencies="high")
    rest_worker = None
    try:
        await write_low_backlog(svc)
        rest_worker = start(tmp_path, "rest", "medium,low", urgencies="medium,low")
        until("low deliveries under way", lambda: len(discord_fake.messages()) >= 5)
        # When a high change is written
        delivered_before = len(discord_fake.messages())
        high = await svc.set_config("urgent.db.failover", "replica-2")
        waiting = low_waiting(raw, svc)
        # Then it reaches Discord ahead of the low backlog that was waiting
        await assert_overtook(svc, discord_fake, str(high.event_id), delivered_before)
        assert waiting >= LOW_BACKLOG // 2
        # and every low change is delivered too, once, by the other worker
        until("all delivered", lambda: len(discord_fake.messages()) >= LOW_BACKLOG + 1,
              timeout_s=240)
        assert len(set(message_keys(discord_fake))) == len(discord_fake.messages())
    finally:
        high_worker.stop()
        if rest_worker is not None:
            rest_worker.stop()
    assert "urgencies high\n" in high_worker.log()
    assert "urgencies medium,low" in rest_worker.log()
