"""Reliability on real processes: the relay survives what used to stop it, a lost task is
published again, a vendor never gets one event twice.

Each test runs its own workers on a database no session worker reads.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import ConfigService
from config_core.state.events import event_key, outbox_key
from config_core.state.ledger import rows_key
from config_core.state.values import value_key
from tests.conftest import redis_url
from tests.fakes.blackhole import BlackHole
from tests.fakes.custom_system import FakeCustomSystem
from tests.fakes.discord import FakeDiscord
from tests.fakes.jenkins import FakeJenkins
from tests.fakes.splunk import FakeSplunk
from tests.fakes.stubborn_connector import StubbornConnector
from tests.integration.conftest import (
    FAST_RECOVERY,
    FINISHED,
    RECOVERY_DB,
    all_in,
    wait_for_deliveries,
)
from tests.integration.spare_redis import SpareRedis
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def raw(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url(RECOVERY_DB), decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Workers a test starts (``start``), all stopped at its end."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


def start(started: list[WorkerProcess], tmp_path: Path, **options: Any) -> WorkerProcess:
    env = {**FAST_RECOVERY, **options.pop("env", {})}
    worker = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=env, **options)
    started.append(worker)
    return worker.wait_ready()


def discord_keys(fake: FakeDiscord) -> Counter[str]:
    """How many messages the fake accepted for each changed key."""
    return Counter(f["value"] for m in fake.messages() for f in m["embeds"][0]["fields"]
                   if f["name"] == "Key")


async def wait_all(service: ConfigService, event_ids: list[str], timeout_s: float = 60.0,
                   ) -> list[dict[str, Any]]:
    """Every event's deliveries, once all are over."""
    found = []
    for event_id in event_ids:
        found += await wait_for_deliveries(service, event_id, FINISHED, timeout_s=timeout_s)
    return found


# 1. The relay survives any failure --------------------------------------------------------------

async def test_relay__entry_it_cannot_dispatch__recorded_dead_and_later_changes_delivered(
        lonely_service: ConfigService, discord_fake: FakeDiscord, raw: redis.Redis,
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    # Given Discord configured and, in the outbox, an entry that is not an event at all
    svc = lonely_service
    await svc.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    poison = raw.xadd(outbox_key(svc.namespace), {"e": "{not json"})
    # When a worker relays it and a good change comes after it
    start(workers, tmp_path)
    after = await svc.set_config("app.after", 1)
    # Then the good change is delivered
    await wait_for_deliveries(svc, after.event_id, all_in("delivered"), timeout_s=30)
    # And the bad entry is a dead delivery to "relay" that says why, out of the outbox
    [row] = await svc.get_deliveries(f"entry-{poison}")
    assert (row["connector"], row["status"]) == ("relay", "dead")
    assert "JSONDecodeError" in row["last_error"]
    assert raw.xlen(outbox_key(svc.namespace)) == 0
    assert any(d["event_id"] == f"entry-{poison}" for d in await svc.dead_deliveries())


async def test_relay__stored_setting_breaks_a_connector__its_delivery_dead_others_delivered(
        lonely_service: ConfigService, discord_fake: FakeDiscord, raw: redis.Redis,
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    svc = lonely_service
    with FakeSplunk() as splunk:
        # Given Discord and Splunk, and a Splunk setting stored before such values were refused
        await svc.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
        await svc.set_config("integrations.splunk", splunk.config())
        stored = json.loads(raw.hget(value_key(svc.namespace, "integrations.splunk"), "value"))
        raw.hset(value_key(svc.namespace, "integrations.splunk"), "value",
                 json.dumps({**stored, "flush_interval": 10**400}))
        start(workers, tmp_path)
        # When two changes go to both
        first, second = [(await svc.set_config(f"app.k{i}", i)).event_id for i in range(2)]
        rows = {(r["connector"], e): r for e in (first, second)
                for r in await wait_for_deliveries(svc, e, FINISHED, timeout_s=30)}
    # Then Discord got both, and each Splunk delivery is dead saying why; the relay carried on
    assert {rows["discord", e]["status"] for e in (first, second)} == {"delivered"}
    assert {rows["splunk", e]["status"] for e in (first, second)} == {"dead"}
    assert "OverflowError" in rows["splunk", first]["last_error"]


async def test_relay__broker_down_6s__carries_on_and_every_change_delivered_once(
        lonely_service: ConfigService, discord_fake: FakeDiscord,
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    svc = lonely_service
    with SpareRedis() as broker:
        # Given a worker whose broker is a Redis of its own, and changes flowing
        start(workers, tmp_path, env={"CELERY_BROKER_URL": broker.url,
                                      "CELERY_RESULT_BACKEND": broker.url})
        await svc.set_config("integrations.discord",
                             {"webhook_url": discord_fake.add_webhook()})
        before = [(await svc.set_config(f"app.a{i}", i)).event_id for i in range(10)]
        await wait_all(svc, before)
        # When the broker is down for 6 s while more changes are written
        broker.stop()
        during = [(await svc.set_config(f"app.b{i}", i)).event_id for i in range(10)]
        await asyncio.sleep(6)
        broker.start()
        # Then every change is delivered, each exactly once
        rows = await wait_all(svc, before + during, timeout_s=90)
    assert {row["status"] for row in rows} == {"delivered"}
    sent = discord_keys(discord_fake)
    assert [sent[f"app.{s}{i}"] for s in "ab" for i in range(10)] == [1] * 20


async def test_relay__relay_alive__reported_with_its_backlog(
        lonely_service: ConfigService, discord_fake: FakeDiscord, raw: redis.Redis,
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    # Given a running worker that has relayed a change
    svc = lonely_service
    worker = start(workers, tmp_path)
    await svc.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await wait_all(svc, [(await svc.set_config("app.k", 1)).event_id])
    await asyncio.sleep(6)  # one sweep reports
    # When an operator asks for the status
    status = await svc.status()
    # Then the worker's relay is alive, with the namespace's backlog
    [relay] = [r for r in status["relays"] if r["pid"] == worker.proc.pid]
    assert relay["alive"] is True and relay["dispatched"] >= 2
    assert relay["backlog"][svc.namespace.name] == {
        "outbox": 0, "pending": 0, "by_urgency": {"high": 0, "medium": 0, "low": 0}}
    assert relay["urgencies"] == ["high", "medium", "low"]
    assert status["outbox"] == 0
    assert status["outbox_by_urgency"] == {"high": 0, "medium": 0, "low": 0}


# 2. A lost task is published again --------------------------------------------------------------

async def test_delivery__its_task_lost__reconciler_publishes_it_again(
        lonely_service: ConfigService, discord_fake: FakeDiscord, raw: redis.Redis,
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    # Given a worker that relays but takes only high-urgency tasks
    svc = lonely_service
    await svc.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    high_only = start(workers, tmp_path, queues="high")
    result = await svc.set_config("app.k", 1)
    await wait_for_deliveries(svc, result.event_id, all_in("pending"), timeout_s=20)
    high_only.stop()
    # When the queued delivery task is lost (the broker lost its medium queue)
    assert raw.delete("medium") == 1
    # Then a worker's reconciler finds the delivery overdue and publishes it again
    start(workers, tmp_path)
    await wait_for_deliveries(svc, result.event_id, all_in("delivered"), timeout_s=30)
    assert discord_keys(discord_fake)["app.k"] == 1


async def test_delivery__killed_by_hard_time_limit__recorded_dead_sent_once(
        lonely_service: ConfigService, raw: redis.Redis, workers: list[WorkerProcess],
        tmp_path: Path) -> None:
    # Given a custom connector stuck past the soft limit, allowed no retry
    svc = lonely_service
    with FakeCustomSystem("k") as fake:
        await svc.set_config("integrations.retries", {"max_retries": 0})
        await svc.set_config("integrations.notifications", {"triggers": {
            "all": {"patterns": ["app.*"], "connectors": ["stubborn"], "urgency": "high"}}})
        start(workers, tmp_path, env={"APGCFG_TASK_TIME_LIMIT_S": "3"})
        await register_stubborn(svc, fake)
        # When its delivery is killed by the hard time limit, every time
        result = await svc.set_config("app.k", 1)
        [row] = await wait_for_deliveries(svc, result.event_id, FINISHED, timeout_s=60)
    # Then it ends dead with the reason, and the vendor got it once
    assert row["status"] == "dead" and "died" in row["last_error"]
    assert len(fake.messages()) == 1


async def register_stubborn(svc: ConfigService, fake: FakeCustomSystem) -> None:
    await svc.register_connector("stubborn", StubbornConnector(
        {"api_url": fake.base_url, "api_key": "k", "work_s": 30}))


# 3. An outbox that vanished is recreated ---------------------------------------------------------

async def test_relay__outbox_stream_deleted__recreated_and_other_tenants_unaffected(
        lonely_service: ConfigService, discord_fake: FakeDiscord, raw: redis.Redis,
        workers: list[WorkerProcess], tmp_path: Path, tenant: str) -> None:
    # Given two tenants delivering to Discord through one worker
    start(workers, tmp_path)
    other = ConfigService(redis_url=redis_url(RECOVERY_DB), environment="production",
                          tenant=f"{tenant}x")
    try:
        for svc in (lonely_service, other):
            await svc.set_config("integrations.discord",
                                 {"webhook_url": discord_fake.add_webhook()})
            await wait_all(svc, [(await svc.set_config("app.before", 1)).event_id])
        # When one tenant's outbox stream (and its group) is deleted, as by a Redis restart
        raw.delete(outbox_key(lonely_service.namespace))
        # Then both tenants' next changes are delivered
        ids = [(await svc.set_config("app.after", 1)).event_id for svc in (lonely_service, other)]
        await wait_all(lonely_service, ids[:1], timeout_s=30)
        await wait_all(other, ids[1:], timeout_s=30)
    finally:
        await other.close()
    assert discord_keys(discord_fake)["app.after"] == 2


# 5. No wait is infinite --------------------------------------------------------------------------

async def test_delivery__retry_after_infinite__wait_capped_and_ledger_is_json(
        lonely_service: ConfigService, discord_fake: FakeDiscord, raw: redis.Redis,
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    # Given Discord answering 429 with an infinite wait
    svc = lonely_service
    start(workers, tmp_path)
    await svc.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await wait_all(svc, [(await svc.set_config("app.before", 1)).event_id])
    discord_fake.fail_next(429, retry_after_s=1e12, headers={"Retry-After": "inf"})
    # When a change is delivered
    result = await svc.set_config("app.k", 1)
    await wait_for_deliveries(svc, result.event_id, all_in("retrying"), timeout_s=30)
    # Then the ledger row is strict JSON and the next attempt is at most an hour away
    text = raw.hget(rows_key(svc.namespace, result.event_id), "discord")
    row = json.loads(text, parse_constant=refuse)
    assert 0 < row["next_attempt_at"] - time.time() <= 3600 + 5
    assert math.isfinite(row["next_attempt_at"])


def refuse(constant: str) -> None:
    raise AssertionError(f"{constant} in stored JSON")


# 10. A chat message is never posted twice --------------------------------------------------

async def test_pool_process_sigkilled_mid_request__no_message_posted_twice(
        lonely_service: ConfigService, workers: list[WorkerProcess], tmp_path: Path) -> None:
    svc = lonely_service
    with FakeDiscord(delay_s=1.0) as fake:
        # Given a slow Discord (it keeps the message, then answers after 1 s) and a worker
        worker = start(workers, tmp_path)
        await svc.set_config("integrations.discord", {"webhook_url": fake.add_webhook()})
        ids = [(await svc.set_config(f"app.k{i}", i)).event_id for i in range(12)]
        # When a pool process is SIGKILLed while its request is in flight
        await wait_requests(fake, 3)
        os.kill(worker.pool_pids()[0], signal.SIGKILL)
        # Then every change ends delivered or dead, and none is posted twice
        rows = await wait_all(svc, ids, timeout_s=90)
    sent = discord_keys(fake)
    assert max(sent.values()) == 1
    by_key = dict(zip([f"app.k{i}" for i in range(12)], rows, strict=True))
    assert all(sent[key] == 1 for key, row in by_key.items() if row["status"] == "delivered")
    dead = [row for row in rows if row["status"] == "dead"]
    assert len(dead) <= 1 and all("outcome unknown" in row["last_error"] for row in dead)


async def wait_requests(fake: FakeDiscord, count: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(fake.requests) < count:
        assert time.monotonic() < deadline, f"only {len(fake.requests)} requests"
        await asyncio.sleep(0.02)


# 11. A batched event is never buffered twice ------------------------------------------------

async def test_splunk__event_dispatched_again_after_delivery__indexed_once(
        lonely_service: ConfigService, raw: redis.Redis, workers: list[WorkerProcess],
        tmp_path: Path) -> None:
    svc = lonely_service
    with FakeSplunk() as fake:
        # Given Splunk with small batches, and a change it has indexed
        start(workers, tmp_path)
        await svc.set_config("integrations.notifications", {"triggers": {
            "logs": {"patterns": ["app.*"], "connectors": ["splunk"], "urgency": "low"}}})
        await svc.set_config("integrations.splunk", fake.config(batch_size=1, flush_interval=1))
        result = await svc.set_config("app.k", 1)
        await wait_for_deliveries(svc, result.event_id, all_in("delivered"), timeout_s=30)
        # When a relay dispatches the same outbox entry again (it died before acknowledging)
        raw.xadd(outbox_key(svc.namespace), {"e": raw.get(event_key(svc.namespace,
                                                                     result.event_id))})
        marker = await svc.set_config("app.marker", 1)
        await wait_for_deliveries(svc, marker.event_id, all_in("delivered"), timeout_s=30)
        await asyncio.sleep(2)
        # Then the change is still indexed once, and still delivered
        assert Counter(fake.indexed_keys())["app.k"] == 1
        [row] = await svc.get_deliveries(result.event_id)
        assert row["status"] == "delivered"


# 6. A follow-up ends only in a recorded outcome ---------------------------------------------

async def configure_jenkins(svc: ConfigService, fake: FakeJenkins) -> None:
    config = fake.config(trigger_patterns=["app.*"], poll_interval_s=0.2)
    result = await svc.set_config("integrations.jenkins", config)
    await wait_for_deliveries(svc, result.event_id, FINISHED)


async def wait_follow_up_ended(svc: ConfigService, event_id: str, timeout_s: float = 60.0,
                               ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    row: dict[str, Any] = {}
    while time.monotonic() < deadline:
        [row] = await svc.get_deliveries(event_id) or [{}]
        if row.get("detail", {}).get("follow_up", {}).get("status") in ("done", "failed"):
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"follow-up of {event_id} did not end in {timeout_s}s: {row}")


async def test_jenkins_follow_up__status_checks_keep_failing__gives_up_with_recorded_outcome(
        lonely_service: ConfigService, workers: list[WorkerProcess], tmp_path: Path) -> None:
    svc = lonely_service
    with FakeJenkins(queue_polls=1, build_polls=2) as fake:
        # Given Jenkins that takes the build, then answers every status check with 503
        start(workers, tmp_path, env={"APGCFG_FOLLOW_UP_MAX_FAILURES": "3"})
        await configure_jenkins(svc, fake)
        fake.fail_next(503, times=10_000, method="GET")
        # When a change triggers a build
        result = await svc.set_config("app.k", 1)
        # Then the follow-up gives up, and says so in the ledger and the key's history
        row = await wait_follow_up_ended(svc, result.event_id)
    assert row["status"] == "delivered"
    assert row["detail"]["follow_up"]["status"] == "failed"
    assert "3 failed step(s)" in row["detail"]["follow_up"]["error"]
    assert row["detail"]["build"]["result"] == "unknown"
    [entry] = await svc.history("app.k")
    assert [n["build"]["result"] for n in entry["notes"]] == ["unknown"]


async def test_jenkins_follow_up__pool_process_killed_mid_check__result_still_recorded(
        lonely_service: ConfigService, workers: list[WorkerProcess], tmp_path: Path) -> None:
    svc = lonely_service
    with FakeJenkins(queue_polls=1, build_polls=4, delay_s=0.5) as fake:
        # Given a slow Jenkins, and a worker following a build
        worker = start(workers, tmp_path)
        await configure_jenkins(svc, fake)
        result = await svc.set_config("app.k", 1)
        await wait_requests_matching(fake, lambda r: r.method == "GET", 1)
        # When every pool process is SIGKILLed in the middle of a status check
        for pid in worker.pool_pids():
            os.kill(pid, signal.SIGKILL)
        # Then the build is still followed to its result, noted once
        row = await wait_follow_up_ended(svc, result.event_id, timeout_s=90)
    assert row["detail"]["follow_up"]["status"] == "done"
    assert row["detail"]["build"]["result"] == "SUCCESS"
    [entry] = await svc.history("app.k")
    assert [n["build"]["result"] for n in entry["notes"]] == ["SUCCESS"]


async def wait_requests_matching(fake: Any, match: Any, count: int,
                                 timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(1 for r in fake.requests if match(r)) < count:
        assert time.monotonic() < deadline, "the fake did not get the requests in time"
        await asyncio.sleep(0.02)


# A vendor that never answers does not slow the others ----------------------------------------

async def test_vendor_never_answers__breaker_opens__other_connector_keeps_delivering(
        lonely_service: ConfigService, discord_fake: FakeDiscord,
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    svc = lonely_service
    with BlackHole() as hole:
        # Given Slack pointing at a vendor that never answers, and Discord that does
        start(workers, tmp_path, env={"APGCFG_BREAKER_COOLDOWN_S": "120"})
        await svc.set_config("integrations.slack",
                             {"webhook_url": f"{hole.base_url}/services/T1/B1/secret"})
        await svc.set_config("integrations.discord",
                             {"webhook_url": discord_fake.add_webhook()})
        # When 30 changes go to both
        ids = [(await svc.set_config(f"app.k{i:02d}", i)).event_id for i in range(30)]
        # Then Discord delivers all of them while Slack's breaker holds its deliveries back
        await wait_connector(svc, ids, "discord", "delivered", timeout_s=60)
        slack = [r for e in ids for r in await svc.get_deliveries(e) if r["connector"] == "slack"]
    assert hole.connections <= 10  # the first few attempts; the rest wait for the breaker
    waiting = [r for r in slack if r["status"] == "retrying" and "is failing" in r["last_error"]]
    assert len(waiting) >= 20
    assert sum(discord_keys(discord_fake)[f"app.k{i:02d}"] for i in range(30)) == 30


async def wait_connector(svc: ConfigService, ids: list[str], connector: str, status: str,
                         timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = [r for e in ids for r in await svc.get_deliveries(e) if r["connector"] == connector]
        if len(rows) == len(ids) and all(r["status"] == status for r in rows):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{connector} not all {status} in {timeout_s}s")
