"""The delivery state against a real Redis: claims, parking, the retry schedule, batches that
run late, writes whose answer was lost, a relay that stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config_core import ConfigError, ConfigService, IntegrationError
from config_core.state import buffers, ledger, parking
from config_core.state.keys import Namespace
from config_core.state.ledger import LedgerRow, Status
from config_core.state.parking import PARKED_KEY
from config_core.state.relays import Health
from connectors import BaseConnector
from tests.conftest import UNIT_DB, redis_url
from tests.fakes.splunk import FakeSplunk
from tests.unit.dropping_proxy import DroppingProxy
from workers import batches, bootsteps, scheduling
from workers.delivery import failed
from workers.retrying import DEFAULT_WINDOW_S, STEP_MAX_S, RetryPolicy

PARKING_DB = 10


# 9. A claim decides on what is stored now ------------------------------------------------------

def test_claim__row_delivered_after_it_was_read__final_nothing_sent_again(
        raw_redis: redis.Redis, tenant: str) -> None:
    # Given a pending delivery, read by two copies of its task
    ns = Namespace(tenant, "production")
    pipe = raw_redis.pipeline()
    ledger.open_rows(pipe, ns, "e1", {"slack": "medium"})
    pipe.execute()
    stale = raw_redis.hget(ledger.rows_key(ns, "e1"), "slack")
    # When the first copy claims, sends and records it delivered
    first = ledger.claim(raw_redis, ns, "e1", "slack", "medium", 30, stale)
    assert first.kind == "claimed" and first.row is not None
    ledger.finish(raw_redis, ns, "e1", first.row.mark(Status.DELIVERED), first.token)
    # Then the second copy, claiming with what it read before, finds it final
    second = ledger.claim(raw_redis, ns, "e1", "slack", "medium", 30, stale)
    assert second.kind == "final" and second.row is not None
    assert second.row.status == Status.DELIVERED and second.row.attempts == 1


def test_claim__lease_held__busy_then_after_it_expires__in_doubt(
        raw_redis: redis.Redis, tenant: str) -> None:
    # Given an attempt that claimed a delivery and never finished (its process died)
    ns = Namespace(tenant, "production")
    first = ledger.claim(raw_redis, ns, "e2", "discord", "high", 0.3, None)
    assert first.kind == "claimed"
    current = raw_redis.hget(ledger.rows_key(ns, "e2"), "discord")
    # When another copy claims while its lease lasts, it is told to wait
    assert ledger.claim(raw_redis, ns, "e2", "discord", "high", 30, current).kind == "busy"
    # And after the lease it takes over, knowing the earlier outcome is unknown
    time.sleep(0.4)
    later = ledger.claim(raw_redis, ns, "e2", "discord", "high", 30, current)
    assert later.kind == "in_doubt" and later.row is not None and later.row.attempts == 2


def test_finish__delivered_row__a_late_failure_does_not_move_it_back(
        raw_redis: redis.Redis, tenant: str) -> None:
    ns = Namespace(tenant, "production")
    row = LedgerRow.new("jira", "low").mark(Status.DELIVERED)
    assert ledger.finish(raw_redis, ns, "e3", row) is True
    late = LedgerRow.new("jira", "low").mark(Status.RETRYING, "timeout", 5)
    assert ledger.finish(raw_redis, ns, "e3", late) is False
    assert ledger.load(raw_redis, ns, "e3", "jira").status == Status.DELIVERED  # type: ignore


def test_open_batched__already_delivered__not_buffered_again(
        raw_redis: redis.Redis, tenant: str) -> None:
    ns = Namespace(tenant, "production")
    ledger.finish(raw_redis, ns, "done", LedgerRow.new("splunk", "low").mark(Status.DELIVERED))
    moved = ledger.open_batched(raw_redis, ns, "splunk", [("done", "low"), ("new", "low")])
    assert moved == ["new"]


# 7. A re-parked delivery survives the older parking's done() -------------------------------------

@pytest.fixture
def parked_redis(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url(PARKING_DB), decode_responses=True)
    client.delete(PARKED_KEY)
    yield client
    client.close()


def test_park__parked_again_while_the_first_is_published__the_new_one_survives(
        parked_redis: redis.Redis) -> None:
    # Given a parked delivery taken for publishing
    args = ["t:e", "ev", "slack"]
    parking.park(parked_redis, "workers.deliver.slack", args, {}, wait_s=0)
    [taken] = parking.take_due(parked_redis)
    # When it runs, fails again and is parked again before the first publish is marked done
    parking.park(parked_redis, "workers.deliver.slack", args, {}, wait_s=60)
    parking.done(parked_redis, taken["member"])
    # Then the new parking is still there
    assert parked_redis.zcard(PARKED_KEY) == 1


# 8. The default schedule rides out an hour ------------------------------------------------------

def test_retry_schedule__defaults__vendor_down_an_hour_retried_throughout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a delivery whose vendor never answers, with the default policy
    clock = [1_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    row, waits = LedgerRow.new("slack", "medium"), []
    # When every attempt fails until the policy gives up
    while row.status != Status.DEAD:
        row.attempts += 1
        failed(row, RetryPolicy(), "503 Service Unavailable", None)
        if row.next_attempt_at is not None:
            waits.append(row.next_attempt_at - clock[0])
            clock[0] = row.next_attempt_at
    # Then it was retried for at least an hour, no wait longer than a backoff step,
    # the long waits parked rather than held as countdowns
    assert clock[0] - 1_000_000.0 >= DEFAULT_WINDOW_S
    assert max(waits) <= STEP_MAX_S and 10 <= len(waits) <= 30
    assert {scheduling.plan(w) for w in waits if w > 45} == {scheduling.Route.PARKED}


def test_retry_policy__per_connector_override__used_for_that_connector_only() -> None:
    retries = {"window_s": 600, "connectors": {"slack": {"max_retries": 2}}}
    assert RetryPolicy.of("slack", retries, {}) == RetryPolicy(600.0, 2)
    assert RetryPolicy.of("discord", retries, {"max_retries": 7}) == RetryPolicy(600.0, 7)


# 4. A chord that runs late posts each event with its own item -----------------------------------

async def test_splunk_chord__prepared_for_an_older_id_list__each_event_posted_its_own(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    with FakeSplunk() as fake:
        # Given three events in Splunk's buffer, claimed as one batch and prepared
        await service.set_config("integrations.notifications", {"triggers": {
            "logs": {"patterns": ["app.*"], "connectors": ["splunk"], "urgency": "low"}}})
        await service.set_config("integrations.splunk",
                                 fake.config(batch_size=100, flush_interval=3600))
        for i in range(3):
            await service.set_config(f"app.k{i}", i)
        claimed = buffers.claim(raw_redis, service.namespace, "splunk", force=True)
        held: Any = buffers.batch(raw_redis, service.namespace, "splunk", claimed["batch_id"])
        chunks = [batches.prepare(service.namespace.name, "splunk", held["ids"])]
        # When the batch meanwhile holds only the last two (the first was posted by an
        # earlier run) and this chord's body runs late
        buffers.update(raw_redis, service.namespace, "splunk", claimed["batch_id"],
                       held["ids"][1:], 1, 60)
        batches.post(chunks, service.namespace.name, "splunk", claimed["batch_id"])
        # Then HEC gets exactly those two, each with its own event
        assert fake.indexed_keys() == ["app.k1", "app.k2"]


# 12. A write whose answer was lost is applied once -----------------------------------------------

async def test_set_config__answer_lost__applied_once_and_reported_applied(
        eager: None, tenant: str, raw_redis: redis.Redis) -> None:
    with DroppingProxy() as proxy:
        svc = ConfigService(redis_url=f"redis://127.0.0.1:{proxy.port}/{UNIT_DB}",
                            environment="production", tenant=tenant)
        try:
            await svc.set_config("app.warm", 1)  # the write script is loaded
            # Given a connection that loses the answer to the next write
            proxy.drop_next_script_reply()
            # When a change is written (the client sends it again on a new connection)
            result = await svc.set_config("app.database.host", "prod-db.internal")
            # Then it is reported applied, once: one version, one history entry, one event
            assert proxy.dropped == 1
            assert result.version == 1 and result.event_id
            assert len(await svc.history("app.database.host")) == 1
            assert await svc.get_config("app.database.host") == "prod-db.internal"
        finally:
            await svc.close()


async def test_set_config__redis_gone_after_the_write__unknown_then_same_key_applies_once(
        eager: None, tenant: str) -> None:
    with DroppingProxy() as proxy:
        svc = ConfigService(redis_url=f"redis://127.0.0.1:{proxy.port}/{UNIT_DB}",
                            environment="production", tenant=tenant)
        try:
            await svc.set_config("app.warm", 1)
            # Given a write whose answer is lost, and Redis unreachable afterwards
            proxy.drop_next_script_reply()
            proxy.refuse.set()
            # When the change is written, the outcome is unknown and the error says so
            with pytest.raises(IntegrationError, match=r"unknown.*idempotency_key='deploy-42'"):
                await svc.set_config("app.k", "v1", idempotency_key="deploy-42")
            # And once Redis answers again, the same call applies nothing new
            proxy.refuse.clear()
            again = await svc.set_config("app.k", "v1", idempotency_key="deploy-42")
            assert again.version == 1
            assert len(await svc.history("app.k")) == 1
        finally:
            await svc.close()


async def test_set_config__bad_idempotency_key__config_error_naming_it(
        service: ConfigService) -> None:
    with pytest.raises(ConfigError, match="idempotency_key"):
        await service.set_config("app.k", 1, idempotency_key="has spaces")


# 1. The relay is restarted if it ever stops -------------------------------------------------------

class _StopsOnce:
    """A relay whose loop raises the first time it runs, then runs until stopped."""

    def __init__(self, health: Any) -> None:
        self.health, self.runs = health, 0

    def run(self, stop: threading.Event) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("relay loop broke")
        stop.set()


def test_relay_step__relay_raises__started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootsteps, "RESTART_PAUSE_MAX_S", 0.01)
    step = bootsteps.RelayStep.__new__(bootsteps.RelayStep)
    step._stop, step.relay = threading.Event(), _StopsOnce(Health("test"))  # type: ignore
    step.supervise()
    assert step.relay.runs == 2 and step.relay.health.restarts == 1  # type: ignore
    assert "relay loop broke" in (step.relay.health.last_error or "")  # type: ignore


class _Picky(BaseConnector):
    """A custom connector whose constructor chokes on its stored config, quoting it."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        if config.get("api_token") == "tok-that-must-stay-secret":
            raise ValueError(f"cannot use api_token {config['api_token']}")

    def send_notification(self, event: dict[str, Any]) -> bool:
        return True


async def test_delivery__connector_cannot_be_built__dead_without_the_secret_it_quoted(
        service: ConfigService) -> None:
    # Given a custom connector registered, whose stored token later breaks its constructor
    await service.register_connector("picky", _Picky({"api_token": "fine"}))
    await service.set_config("integrations.picky.api_token", "tok-that-must-stay-secret")
    # When a change is delivered to it
    result = await service.set_config("app.k", 1)
    rows = [r for r in await service.get_deliveries(result.event_id) if r["connector"] == "picky"]
    # Then the delivery is dead saying why, without the token
    assert rows[0]["status"] == "dead" and "ValueError" in rows[0]["last_error"]
    assert "tok-that-must-stay-secret" not in rows[0]["last_error"]
