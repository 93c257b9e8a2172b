"""Connector health (eager): vendor check plus delivery history, auto-pause, waiting line."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
import redis

from config_core import ConfigError, ConfigService
from config_core.state import breakers, health
from config_core.state.keys import Namespace
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack


async def slack_failing(service: ConfigService, slack_fake: FakeSlack, failures: int,
                        **health_settings: int) -> str:
    """Slack configured, its webhook answering 404 ``no_service`` to ``failures`` changes."""
    url = slack_fake.add_webhook()
    if health_settings:
        await service.set_config("integrations.health", health_settings)
    await service.set_config("integrations.slack", {"webhook_url": url})
    slack_fake.reset()
    slack_fake.fail_next(404, times=failures, webhook_url=url)
    for i in range(failures):
        await service.set_config(f"app.failing.k{i}", i)
    return url


def event_types(raw_redis: redis.Redis, service: ConfigService) -> list[dict[str, Any]]:
    """Every routed event of the service's namespace, oldest first."""
    keys = raw_redis.keys(service.namespace.key("event", "*"))
    found = [json.loads(str(raw_redis.get(k))) for k in keys]
    return sorted(found, key=lambda e: e["timestamp_epoch"])


async def test_slack_every_delivery_fails__check_integration_health__unhealthy_error_masked(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given a well-formed Slack config whose last 3 deliveries all failed
    url = await slack_failing(service, slack_fake, 3)
    # When its health is checked
    report = (await service.check_integration_health())["slack"]
    # Then it is unhealthy, saying why, with the webhook's secret path nowhere
    assert report["status"] == "unhealthy"
    assert "no_service" in report["error"] and report["consecutive_failures"] == 3
    assert url.rsplit("/", 1)[1] not in json.dumps(report)
    assert set(report) >= {"status", "last_check", "error"}


async def test_guide_monitoring_snippet__failing_slack__reports_unhealthy(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given a failing Slack connector
    await slack_failing(service, slack_fake, 3)

    # When the guide's snippet runs as pasted (connector names adapted)
    async def check_integration_health() -> dict[str, Any]:
        results = {}
        for connector_name in ["slack"]:
            try:
                connector = await service.get_connector(connector_name)
                health = await connector.health_check()
                results[connector_name] = {
                    "status": "healthy" if health else "unhealthy",
                    "last_check": datetime.utcnow().isoformat()
                }
            except Exception as e:  # noqa: BLE001 - the guide's snippet, as pasted
                results[connector_name] = {
                    "status": "error",
                    "error": str(e),
                    "last_check": datetime.utcnow().isoformat()
                }
        return results

    # Then the connector's own health_check weighs its deliveries
    assert (await check_integration_health())["slack"]["status"] == "unhealthy"


async def test_ten_failures_in_a_row__next_changes__wait_unattempted_then_resume_in_order(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given Slack failing 10 deliveries in a row (the default pause threshold)
    url = await slack_failing(service, slack_fake, 10)
    listed = {c["name"]: c for c in await service.connectors()}
    assert listed["slack"]["paused"] is True
    posts = len(slack_fake.requests)
    # When more changes are made
    results = [await service.set_config(f"app.later.k{i}", i) for i in range(3)]
    # Then nothing is sent or counted as an attempt: the deliveries wait
    assert len(slack_fake.requests) == posts
    for result in results:
        (row,) = await service.get_deliveries(result.event_id)
        assert (row["status"], row["attempts"]) == ("waiting", 0)
    # (and so does the integration.unhealthy event, routed to every connector like any other)
    assert (await service.connectors())[0]["waiting"] == 4
    # When the connector is resumed
    await service.resume_connector("slack")
    # Then every waiting delivery goes out once, in order
    keys = [m["blocks"][1]["fields"][0]["text"] for m in slack_fake.messages(url)]
    assert [k.split("`")[1] for k in keys] == [
        "integrations.slack", "app.later.k0", "app.later.k1", "app.later.k2"]
    for result in results:
        (row,) = await service.get_deliveries(result.event_id)
        assert (row["status"], row["attempts"]) == ("delivered", 1)
    assert (await service.connectors())[0]["waiting"] == 0


async def test_pause_after_setting__three_failures__paused_and_unhealthy_event_emitted(
        service: ConfigService, slack_fake: FakeSlack, raw_redis: redis.Redis) -> None:
    # Given integrations.health pausing after 3 failures
    await slack_failing(service, slack_fake, 3, pause_after=3)
    # Then Slack is paused, and integration.unhealthy was emitted once, masked
    assert (await service.connectors())[0]["paused"] is True
    emitted = [e for e in event_types(raw_redis, service) if e["type"].startswith("integration.")]
    assert [(e["type"], e["key"]) for e in emitted] == [
        ("integration.unhealthy", "integrations.slack")]
    assert emitted[0]["metadata"]["paused"] is True
    assert "no_service" in emitted[0]["metadata"]["error"]
    # When health is checked again, still unhealthy: no second event
    assert (await service.check_integration_health())["slack"]["status"] == "unhealthy"
    assert len([e for e in event_types(raw_redis, service)
                if e["type"] == "integration.unhealthy"]) == 1


async def test_resumed_and_delivering__health_checked__recovered_event(
        service: ConfigService, slack_fake: FakeSlack, raw_redis: redis.Redis) -> None:
    # Given a paused Slack (3 failures) that works again
    await slack_failing(service, slack_fake, 3, pause_after=3)
    # When it is resumed, a change goes through, and health is checked
    await service.resume_connector("slack")
    await service.set_config("app.after.fix", 1)
    report = (await service.check_integration_health())["slack"]
    # Then it is healthy again and integration.recovered was emitted
    assert report["status"] == "healthy" and report["consecutive_failures"] == 0
    types = [e["type"] for e in event_types(raw_redis, service)]
    assert types.count("integration.recovered") == 1


async def test_resumed_but_still_failing__first_failure__paused_again(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given a paused Slack (3 failures) whose webhook still fails
    url = await slack_failing(service, slack_fake, 3, pause_after=3)
    await service.set_config("app.waits", 1)
    slack_fake.fail_next(404, times=1, webhook_url=url)
    # When it is resumed
    await service.resume_connector("slack")
    # Then the first failure pauses it again (the streak was not forgotten)
    assert (await service.connectors())[0]["paused"] is True


async def test_pause_and_resume_by_hand__unknown_connector__key_error(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    await service.set_config("integrations.slack", {"webhook_url": slack_fake.add_webhook()})
    assert (await service.pause_connector("slack"))["paused"] is True
    assert (await service.resume_connector("slack"))["paused"] is False
    with pytest.raises(KeyError):
        await service.pause_connector("jira")


@pytest.mark.parametrize(("value", "field"), [
    ({"pause_after": -1}, "integrations.health.pause_after"),
    ({"unhealthy_after": 0}, "integrations.health.unhealthy_after"),
    ({"pause_afterr": 3}, "pause_afterr"),
    ([], "integrations.health must be a dict")])
async def test_health_settings__bad_value__config_error_names_field(
        service: ConfigService, value: Any, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        await service.set_config("integrations.health", value)


def test_breaker__shares_health_streak__opens_on_vendor_failure_after_threshold(
        raw_redis: redis.Redis, tenant: str) -> None:
    # Given one record per connector
    ns = Namespace(tenant, "production")
    for _ in range(breakers.THRESHOLD - 1):
        health.failed(raw_redis, ns, "slack", "boom", 0)
        breakers.vendor_failed(raw_redis, ns, "slack")
    record = health.read(raw_redis, ns, "slack")
    assert health.failures(record) == breakers.THRESHOLD - 1
    assert breakers.Breaker.parse(record).open_for_s() == 0
    # When one more vendor failure comes
    health.failed(raw_redis, ns, "slack", "boom", 0)
    breakers.vendor_failed(raw_redis, ns, "slack")
    # Then the breaker opens on the same streak, which keeps counting
    record = health.read(raw_redis, ns, "slack")
    assert breakers.Breaker.parse(record).open_for_s() > 0
    assert health.failures(record) == breakers.THRESHOLD
    # And a success ends both
    health.succeeded(raw_redis, ns, "slack")
    record = health.read(raw_redis, ns, "slack")
    assert health.failures(record) == 0 and breakers.Breaker.parse(record).open_for_s() == 0


async def test_paused_connector_with_vendor_check__check_passes__resumed_and_line_sent(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    # Given Discord (whose check fetches its webhook) paused, with two deliveries waiting
    url = discord_fake.add_webhook()
    await service.set_config("integrations.discord", {"webhook_url": url})
    await service.pause_connector("discord", reason="maintenance")
    results = [await service.set_config(f"app.wait.k{i}", i) for i in range(2)]
    assert [(await service.get_deliveries(r.event_id))[0]["status"] for r in results] == [
        "waiting", "waiting"]
    # When a health check finds the vendor answering
    report = (await service.check_integration_health())["discord"]
    # Then the connector is resumed, healthy, and the waiting changes went out in order
    assert report["status"] == "healthy" and report["paused"] is False
    keys = [m["embeds"][0]["fields"][0]["value"] for m in discord_fake.messages(url)]
    assert [k for k in keys if "app.wait" in k] == ["app.wait.k0", "app.wait.k1"]


async def test_paused_slack__config_only_check_passes__stays_paused(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given Slack (whose check only reads the config) paused with a delivery waiting
    await service.set_config("integrations.slack", {"webhook_url": slack_fake.add_webhook()})
    await service.pause_connector("slack")
    result = await service.set_config("app.wait", 1)
    # When a health check runs / Then it stays paused: the check proves nothing of the vendor
    assert (await service.check_integration_health())["slack"]["paused"] is True
    assert (await service.get_deliveries(result.event_id))[0]["status"] == "waiting"


def test_drain__head_fails_again__stays_first_waiting_nothing_overtakes(
        raw_redis: redis.Redis, tenant: str, eager: None) -> None:
    from config_core.state import ledger
    from config_core.state.ledger import LedgerRow, Status
    from workers import lines
    from workers.delivery import Outcome

    # Given two deliveries waiting in Slack's line
    ns = Namespace(tenant, "production")
    for score, event_id in enumerate(["e1", "e2"]):
        row = LedgerRow.new("slack", "medium", Status.WAITING)
        raw_redis.hset(ledger.rows_key(ns, event_id), "slack", row.to_json())
        raw_redis.zadd(health.line_key(ns, "slack"), {event_id: score})
    sent: list[str] = []

    def deliver(namespace: str, event_id: str, name: str, urgency: str, *,
                from_line: bool) -> Outcome:
        # the head is attempted and fails again (retrying in 30 s)
        sent.append(event_id)
        row = ledger.load(raw_redis, ns, event_id, name)
        assert row is not None and row.status == Status.PENDING and from_line
        ledger.finish(raw_redis, ns, event_id, row.mark(Status.RETRYING, "boom", 30.0))
        return Outcome("retrying", 30.0)

    # When the line is drained
    assert lines.drain(ns.name, "slack", deliver) == "waiting for a retry"
    # Then only the head was tried; it is back at the head, waiting, and the drain holds
    # the line until its retry is due
    assert sent == ["e1"]
    assert raw_redis.zrange(health.line_key(ns, "slack"), 0, -1) == ["e1", "e2"]
    assert ledger.load(raw_redis, ns, "e1", "slack").status == Status.WAITING  # type: ignore
    assert raw_redis.zscore(ledger.due_key(ns), ledger.due_member("e1", "slack")) is None
    assert raw_redis.ttl(health.drain_key(ns, "slack")) > 0


async def test_rate_limited_attempts__many_429s__no_failure_counted_not_paused(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given Slack answering 429 to the next 12 posts (back-pressure, not ill health)
    url = slack_fake.add_webhook()
    await service.set_config("integrations.slack", {"webhook_url": url})
    slack_fake.reset()
    slack_fake.fail_next(429, times=12, webhook_url=url, retry_after_s=1)
    # When changes are retried through the storm
    for i in range(4):
        await service.set_config(f"app.storm.k{i}", i)
    # Then the 429s were answered, but none counted towards a pause
    assert len(slack_fake.requests) >= 12
    (listed,) = await service.connectors()
    assert listed["paused"] is False and listed["consecutive_failures"] == 0
