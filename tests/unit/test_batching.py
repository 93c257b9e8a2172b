"""Batched deliveries in eager mode: the same buffer, claim and chord code as on workers."""

from __future__ import annotations

import pytest
import redis

from config_core import ConfigService
from config_core.state import buffers
from tests.fakes import batch_connector
from tests.fakes.batch_connector import ListConnector
from workers import batches


@pytest.fixture(autouse=True)
def clean_batches() -> None:
    batch_connector.BATCHES.clear()
    batch_connector.SCRIPT.clear()


async def setup(service: ConfigService, size: int = 3) -> None:
    await service.set_config("integrations.notifications", {"triggers": {
        "all": {"patterns": ["app.*"], "connectors": ["sink"], "urgency": "low"}}})
    await service.register_connector("sink", ListConnector({"batch_size": size}))


async def statuses(service: ConfigService, event_ids: list[str]) -> list[str]:
    return [(await service.get_deliveries(e))[0]["status"] for e in event_ids]


async def test_buffer__fewer_than_batch_size__held_then_flushed_together(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    # Given a batch size of 3 / When two changes arrive
    await setup(service)
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(2)]
    # Then both wait in the buffer, nothing is sent
    assert batch_connector.BATCHES == [] and await statuses(service, ids) == ["batched"] * 2
    # When the third arrives / Then one batch of three, each delivered
    ids.append((await service.set_config("app.k2", 2)).event_id)
    assert [[i["key"] for i in b] for b in batch_connector.BATCHES] == [
        ["app.k0", "app.k1", "app.k2"]]
    assert await statuses(service, ids) == ["delivered"] * 3
    assert raw_redis.llen(buffers.buffer_key(service.namespace, "sink")) == 0


async def test_batch__redis_forgot_its_scripts__buffered_posted_and_marked_once(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    # Given a batch size of 3 and one change buffered
    await setup(service)
    ids = [(await service.set_config("app.k0", 0)).event_id]
    # When Redis forgets its scripts, then two more changes fill the batch
    raw_redis.script_flush()
    ids += [(await service.set_config(f"app.k{i}", i)).event_id for i in (1, 2)]
    # Then the batch is posted once and every event is marked delivered
    assert [len(b) for b in batch_connector.BATCHES] == [3]
    assert await statuses(service, ids) == ["delivered"] * 3


async def test_flush__interval_passed__partial_batch_sent(service: ConfigService) -> None:
    await setup(service, size=10)
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(4)]
    assert batches.flush(service.namespace.name, "sink") == "wait"
    assert batches.flush(service.namespace.name, "sink", force=True) == "flushed"
    assert [len(b) for b in batch_connector.BATCHES] == [4]
    assert await statuses(service, ids) == ["delivered"] * 4


async def test_batch__vendor_busy_then_ok__retried_nothing_lost_or_doubled(
        service: ConfigService) -> None:
    await setup(service)
    batch_connector.SCRIPT.extend(["busy", "busy"])
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(3)]
    assert [len(b) for b in batch_connector.BATCHES] == [3]
    records = [(await service.get_deliveries(e))[0] for e in ids]
    assert [(r["status"], r["attempts"]) for r in records] == [("delivered", 3)] * 3


async def test_batch__partial_failure__earlier_delivered_bad_dead_later_resent(
        service: ConfigService) -> None:
    await setup(service)
    batch_connector.SCRIPT.append("partial:1")
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(3)]
    # the vendor kept item 0, refused item 1; item 2 went again on its own
    assert [[i["key"] for i in b] for b in batch_connector.BATCHES] == [["app.k0"], ["app.k2"]]
    assert await statuses(service, ids) == ["delivered", "dead", "delivered"]
    assert "item 1 is bad" in (await service.get_deliveries(ids[1]))[0]["last_error"]


async def test_batch__always_busy__dead_after_max_retries(service: ConfigService) -> None:
    await setup(service)
    await service.set_config("integrations.batching", {"max_retries": 2})
    batch_connector.SCRIPT.extend(["busy"] * 10)
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(3)]
    records = [(await service.get_deliveries(e))[0] for e in ids]
    assert [(r["status"], r["attempts"]) for r in records] == [("dead", 3)] * 3
    assert batch_connector.BATCHES == []


async def test_claimed_batch__worker_died_before_post__run_again_once_lease_expires(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given three buffered events, claimed by a flush whose worker then died
    await setup(service, size=10)
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(3)]
    claimed = buffers.claim(raw_redis, service.namespace, "sink", force=True)
    assert claimed["status"] == "batch" and batch_connector.BATCHES == []
    # When its lease runs out, the sweeper finds it (and only once)
    monkeypatch.setattr(buffers.time, "time", lambda: 10**10)
    expired = buffers.expired(raw_redis)
    assert [(c, b) for _, c, b in expired if c == "sink"] == [("sink", claimed["batch_id"])]
    batches.run_batch(service.namespace, "sink", claimed["batch_id"])
    # Then every event is sent exactly once
    assert [[i["key"] for i in b] for b in batch_connector.BATCHES] == [
        ["app.k0", "app.k1", "app.k2"]]
    assert await statuses(service, ids) == ["delivered"] * 3
    batches.run_batch(service.namespace, "sink", claimed["batch_id"])  # a late duplicate
    assert len(batch_connector.BATCHES) == 1


async def test_buffer__events_arrive_in_small_groups__one_flush_asked_per_full_batch(
        service: ConfigService, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a batch size of 10 and an empty buffer, and the flushes asked for recorded (not run)
    asked: list[float] = []
    monkeypatch.setattr(batches, "schedule_flush",
                        lambda ns, connector, delay_s=0.0: asked.append(delay_s))
    ns = service.namespace
    # When 30 events arrive 3 at a time, as a relay reading small stream batches buffers them
    for first in range(0, 30, 3):
        pairs = [(f"event-{i:02d}", "medium") for i in range(first, first + 3)]
        assert batches.buffer(ns, "sink", pairs, (10, 60.0)) == [p[0] for p in pairs]
    # Then the first group opened the window (one timed flush), and each group that filled a
    # batch asked for one flush at once: 3, not one per group after the first batch filled
    assert asked[0] > 0
    assert asked[1:] == [0.0, 0.0, 0.0]
