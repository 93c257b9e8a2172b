"""A change travels writer → outbox → relay → queue → real worker → loopback vendor fake."""

from __future__ import annotations

import json

import pytest
import redis

from config_core import ConfigService
from tests.conftest import INTEGRATION_DB, redis_url
from tests.fakes.custom_system import CustomSystemConnector, FakeCustomSystem
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.integration.conftest import all_in, settle, wait_for_deliveries
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration


async def configure_chat(service: ConfigService, discord: FakeDiscord, slack: FakeSlack,
                         ) -> tuple[str, str]:
    discord_url, slack_url = discord.add_webhook(), slack.add_webhook()
    await settle(service, "integrations.discord", {
        "webhook_url": discord_url, "username": "APG Config Bot",
        "mention_users": ["<@111222333>"], "critical_patterns": ["*.database.*"]})
    await settle(service, "integrations.slack", {
        "webhook_url": slack_url, "channel": "#config-changes", "icon_emoji": ":gear:"})
    return discord_url, slack_url


async def test_change__discord_and_slack_configured__both_receive_the_guide_message(
        service: ConfigService, discord_fake: FakeDiscord, slack_fake: FakeSlack) -> None:
    # Given both chat connectors configured as the guide shows
    discord_url, slack_url = await configure_chat(service, discord_fake, slack_fake)
    discord_fake.reset()
    slack_fake.reset()
    # When a key changes
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then a real worker delivers to both, and the ledger says so
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert {r["connector"]: r["attempts"] for r in records} == {"discord": 1, "slack": 1}
    embed = discord_fake.wait_for_messages(1, webhook_url=discord_url)[-1]["embeds"][0]
    assert embed["title"] == "🔧 Configuration Changed"
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Key"] == "app.database.host" and fields["New Value"] == "prod-db.internal"
    assert fields["Changed By"] == "admin@company.com" and fields["Environment"] == "production"
    assert fields["Time"].endswith(" UTC")
    slack_text = json.dumps(slack_fake.wait_for_messages(1, webhook_url=slack_url)[-1])
    assert "app.database.host" in slack_text and "prod-db.internal" in slack_text


async def test_routing__triggers_by_pattern__connectors_and_urgency_follow_them(
        service: ConfigService, discord_fake: FakeDiscord, slack_fake: FakeSlack) -> None:
    # Given the guide's trigger shapes over two chat connectors
    await configure_chat(service, discord_fake, slack_fake)
    await settle(service, "integrations.notifications", {"triggers": {
        "critical": {"patterns": ["*.database.*"], "connectors": ["discord", "slack"],
                     "urgency": "high"},
        "flags": {"patterns": ["features.*"], "connectors": ["slack"], "urgency": "low"}}})
    # When three keys change
    critical = await service.set_config("app.database.port", 5433)
    flag = await service.set_config("features.dark_mode", True)
    other = await service.set_config("app.unrouted", 1)
    # Then each reaches exactly the connectors of its trigger, at that urgency
    records = await wait_for_deliveries(service, critical.event_id, all_in("delivered"))
    assert {(r["connector"], r["urgency"]) for r in records} == {("discord", "high"),
                                                                 ("slack", "high")}
    records = await wait_for_deliveries(service, flag.event_id, all_in("delivered"))
    assert {(r["connector"], r["urgency"]) for r in records} == {("slack", "low")}
    assert await service.get_deliveries(other.event_id) == []


async def test_rate_limited__429_then_success__waits_at_least_retry_after(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    # Given Discord answers the next post with 429 Retry-After: 2
    url = discord_fake.add_webhook()
    await settle(service, "integrations.discord", {"webhook_url": url})
    discord_fake.reset()
    discord_fake.fail_next(429, webhook_url=url, method="POST", retry_after_s=2)
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then it is delivered on the second attempt, no sooner than 2 s after the first
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert records[0]["attempts"] == 2
    posts = [r for r in discord_fake.requests if r.method == "POST"]
    assert [p.received_at for p in posts][1] - posts[0].received_at >= 2.0


async def test_unknown_webhook__404__dead_after_one_attempt_then_replayable(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    # Given a webhook the vendor has deleted
    url = discord_fake.add_webhook()
    await settle(service, "integrations.discord", {"webhook_url": url})
    discord_fake.delete_webhook(url)
    discord_fake.reset()
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then one attempt, dead, with the vendor's message and no token in it
    records = await wait_for_deliveries(service, result.event_id, all_in("dead"))
    assert records[0]["attempts"] == 1 and "404" in records[0]["last_error"]
    assert url.rsplit("/", 1)[1] not in records[0]["last_error"]
    assert len([r for r in discord_fake.requests if r.method == "POST"]) == 1
    dead = await service.dead_deliveries()
    assert [(d["event_id"], d["connector"]) for d in dead] == [(result.event_id, "discord")]
    # When the webhook is back and the delivery is replayed
    discord_fake.add_webhook(*url.rsplit("/", 2)[1:])
    await service.replay(result.event_id)
    # Then it is delivered and no longer listed as dead
    await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert await service.dead_deliveries() == []


async def test_server_errors__always_503__dead_after_max_retries(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given max_retries 2 and a Slack that always answers 503
    url = slack_fake.add_webhook()
    await settle(service, "integrations.slack", {"webhook_url": url})
    await settle(service, "integrations.batching", {"max_retries": 2})
    slack_fake.reset()
    slack_fake.fail_next(503, times=10, webhook_url=url, retry_after_s=0)
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then 1 + 2 attempts, then dead with the last error
    records = await wait_for_deliveries(service, result.event_id, all_in("dead"), 60)
    assert records[0]["attempts"] == 3 and "503" in records[0]["last_error"]
    assert len(slack_fake.requests) == 3


async def test_custom_connector__guide_example__delivered_by_worker(
        service: ConfigService) -> None:
    # Given the guide's CustomSystemConnector registered against a fake of that system
    with FakeCustomSystem(api_key="custom-key-123456") as fake:
        connector = CustomSystemConnector({"api_url": fake.base_url,
                                           "api_key": "custom-key-123456"})
        await service.register_connector("custom_system", connector)
        # When a key changes
        result = await service.set_config("app.feature", "on")
        # Then the worker imported the class, awaited it, and the system got the event
        await wait_for_deliveries(service, result.event_id, all_in("delivered"))
        data = [m["data"] for m in fake.messages() if m["data"]["key"] == "app.feature"]
        assert data and data[0]["new_value"] == "on"
        assert "custom-key-123456" not in json.dumps(fake.messages())


async def test_secrets__webhook_tokens_and_secret_values__never_in_events_requests_or_logs(
        service: ConfigService, discord_fake: FakeDiscord, slack_fake: FakeSlack,
        worker: WorkerProcess) -> None:
    # Given connectors whose URLs carry tokens, and a channel webhook
    discord_url, slack_url = await configure_chat(service, discord_fake, slack_fake)
    channel_url = discord_fake.add_webhook()
    await settle(service, "integrations.discord.channels", {"database": channel_url})
    secrets = [u.rsplit("/", 1)[1] for u in (discord_url, slack_url, channel_url)]
    secrets.append("hunter2-db-password")
    # When secret-looking keys change and a failure is logged
    await service.set_config("app.database.password", "hunter2-db-password")
    discord_fake.fail_next(401)
    last = await service.set_config("app.database.host", "h")
    await wait_for_deliveries(service, last.event_id, all_in("delivered", "dead"))
    # Then no secret is in any stored event, ledger, history, outbound request or worker log
    raw = redis.Redis.from_url(redis_url(INTEGRATION_DB), decode_responses=True)
    stored = [raw.get(k) or json.dumps(raw.hgetall(k)) for k in
              raw.scan_iter(f"{service.namespace.prefix}event:*")]
    stored += [json.dumps(raw.hgetall(k)) for k in
               raw.scan_iter(f"{service.namespace.prefix}deliveries:*")]
    stored += [json.dumps(raw.lrange(k, 0, -1)) for k in
               raw.scan_iter(f"{service.namespace.prefix}history:*")]
    bodies = [r.body.decode() for f in (discord_fake, slack_fake) for r in f.requests]
    for secret in secrets:
        for text in [*stored, *bodies, worker.log()]:
            assert secret not in text
    assert stored and bodies
