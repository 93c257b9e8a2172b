"""Eager mode (`make test`'s fast layer): the writer relays and delivers inline."""

from __future__ import annotations

import pytest
import redis

from config_core import ConfigError, ConfigService
from connectors import BaseConnector
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack


async def test_set_config__eager__delivered_before_set_config_returns(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com")
    records = await service.get_deliveries(result.event_id)
    assert [(r["connector"], r["status"], r["attempts"]) for r in records] == [
        ("discord", "delivered", 1)]
    fields = discord_fake.messages()[-1]["embeds"][0]["fields"]
    assert {"name": "Old Value", "value": "(none)", "inline": False} in fields


async def test_deliver__redis_forgot_its_scripts__delivered_and_recorded_once(
        service: ConfigService, discord_fake: FakeDiscord, raw_redis: redis.Redis) -> None:
    # Given a delivered change (the ledger's scripts are cached in Redis by SHA)
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await service.set_config("app.first", 1)
    # When Redis forgets its scripts (a restart without persistence, SCRIPT FLUSH)
    raw_redis.script_flush()
    result = await service.set_config("app.second", 2)
    # Then the next delivery loads them again: claimed, sent once, recorded delivered
    records = await service.get_deliveries(result.event_id)
    assert [(r["status"], r["attempts"]) for r in records] == [("delivered", 1)]
    assert sum("app.second" in str(m) for m in discord_fake.messages()) == 1


async def test_integration_config__dict_and_field_forms__read_back_the_same(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    # Given the guide's step 2 (one field) then step 3 (the dict)
    first = discord_fake.add_webhook()
    await service.set_config("integrations.discord.webhook_url", first)
    assert await service.get_config("integrations.discord", reveal=True) == {"webhook_url": first}
    await service.set_config("integrations.discord", {"webhook_url": first, "username": "Bot"})
    # When one field changes
    second = discord_fake.add_webhook()
    result = await service.set_config("integrations.discord.webhook_url", second)
    # Then both forms agree, other fields are kept, and the event masks the URL
    assert await service.get_config("integrations.discord.webhook_url", reveal=True) == second
    assert await service.get_config("integrations.discord", reveal=True) == {
        "webhook_url": second, "username": "Bot"}
    assert result.version == 3
    history = await service.history("integrations.discord.webhook_url")
    assert [h["version"] for h in history] == [3, 2, 1]
    assert history[0]["value"] == {"webhook_url": "***", "username": "Bot"}


async def test_field_write__invalid_field__config_error_nothing_changed(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    url = discord_fake.add_webhook()
    await service.set_config("integrations.discord", {"webhook_url": url})
    with pytest.raises(ConfigError, match=r"integrations\.discord\.username"):
        await service.set_config("integrations.discord.username", "my discord bot")
    with pytest.raises(ConfigError, match="unknown setting"):
        await service.set_config("integrations.discord.colour", "red")
    assert await service.get_config("integrations.discord", reveal=True) == {"webhook_url": url}


async def test_deliver__webhook_404__dead_after_one_attempt(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    url = discord_fake.add_webhook()
    await service.set_config("integrations.discord", {"webhook_url": url})
    discord_fake.delete_webhook(url)
    result = await service.set_config("app.x", 1)
    [record] = await service.get_deliveries(result.event_id)
    assert (record["status"], record["attempts"]) == ("dead", 1)
    assert "Unknown Webhook" in record["last_error"] and url not in record["last_error"]


async def test_deliver__always_503__dead_after_one_plus_max_retries(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    url = slack_fake.add_webhook()
    await service.set_config("integrations.slack", {"webhook_url": url})
    await service.set_config("integrations.batching", {"max_retries": 3})
    slack_fake.reset()
    slack_fake.fail_next(503, times=100)
    result = await service.set_config("app.x", 1)
    [record] = await service.get_deliveries(result.event_id)
    assert (record["status"], record["attempts"]) == ("dead", 4)
    assert len(slack_fake.requests) == 4


async def test_deliver__env_reference__resolved_in_worker_or_dead_naming_variable(
        service: ConfigService, discord_fake: FakeDiscord,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APGCFG_TEST_DISCORD_HOOK", discord_fake.add_webhook())
    await service.set_config("integrations.discord",
                             {"webhook_url": "${env:APGCFG_TEST_DISCORD_HOOK}"})
    ok = await service.set_config("app.x", 1)
    assert (await service.get_deliveries(ok.event_id))[0]["status"] == "delivered"
    monkeypatch.delenv("APGCFG_TEST_DISCORD_HOOK")
    missing = await service.set_config("app.x", 2)
    [record] = await service.get_deliveries(missing.event_id)
    assert record["status"] == "dead" and "APGCFG_TEST_DISCORD_HOOK" in record["last_error"]


async def test_register_connector__class_workers_cannot_import__refused_nothing_written(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given real workers (no eager mode) and a class defined inside a function
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")

    class LocalConnector(BaseConnector):
        def send_notification(self, event: dict) -> bool:
            return True

    # When it is registered / Then refused, and nothing is written
    with pytest.raises(ConfigError, match=r"worker processes cannot import"):
        await service.register_connector("local", LocalConnector({}))
    assert list(raw_redis.scan_iter(f"{service.namespace.prefix}cfg:*")) == []


async def test_health__configured_connectors__healthy_or_error(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await service.set_config("integrations.slack.channel", "#ops")  # incomplete: no webhook_url
    connector = await service.get_connector("discord")
    assert await connector.health_check() is True
    health = await service.check_integration_health()
    assert health["discord"]["status"] == "healthy"
    assert health["slack"]["status"] == "error" and "webhook_url" in health["slack"]["error"]
