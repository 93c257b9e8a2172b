"""Secrets stay masked in events, history and reads, except an explicit admin reveal."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
import redis

from config_core import ConfigError, ConfigService
from config_core.state.events import event_key, outbox_key
from connectors import BaseConnector
from connectors.settings import Setting
from tests.fakes.discord import FakeDiscord

DB_SECRET = "postgres-password-not-for-events"


class DatabaseSinkConnector(BaseConnector):
    """A custom connector whose secret setting has a name that does not look secret."""

    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("endpoint_for_db", secret=True), Setting("label"))

    def send_notification(self, event: dict[str, Any]) -> None:
        return None


def outbox_events(raw: redis.Redis, service: ConfigService) -> list[dict[str, Any]]:
    return [json.loads(fields["e"]) for _, fields in raw.xrange(outbox_key(service.namespace))
            if "e" in fields]


async def test_refused_custom_connector_write__declared_secret__masked_in_error_event(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a registered custom connector with a declared secret named innocently
    await service.register_connector("dbsink", DatabaseSinkConnector({"label": "a"}))
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    # When a write of its whole config, and one of its secret field, are refused
    with pytest.raises(ConfigError, match="unknown setting"):
        await service.set_config("integrations.dbsink",
                                 {"endpoint_for_db": DB_SECRET, "bogus": 1})
    with pytest.raises(ConfigError):
        await service.set_config("integrations.dbsink.endpoint_for_db", [DB_SECRET])
    # Then the config.error events carry the attempted values with the secret masked
    errors = [e for e in outbox_events(raw_redis, service) if e["type"] == "config.error"]
    assert [e["new_value"] for e in errors] == [
        {"endpoint_for_db": "***", "bogus": 1}, ["***"]]
    assert DB_SECRET not in json.dumps(errors)


async def test_set_config__url_with_password__masked_in_event_history_and_reads(
        service: ConfigService, raw_redis: redis.Redis, discord_fake: FakeDiscord) -> None:
    # Given eager mode and a connector, so the relay takes the event from the outbox stream
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    # When a database URL with a password is set
    url = "postgres://admin:hunter2-db@db:5432/x"
    result = await service.set_config("app.database.url", url, changed_by="ops@company.com")
    # Then the event the relay read from the stream shows the URL without its password
    event = json.loads(raw_redis.get(event_key(service.namespace, result.event_id)) or "{}")
    assert event["new_value"] == "postgres://admin:***@db:5432/x"
    assert "hunter2-db" not in json.dumps(discord_fake.messages())
    # And so do the history entry and a plain read; only an explicit reveal shows it
    assert (await service.history("app.database.url"))[0]["value"] == event["new_value"]
    assert await service.get_config("app.database.url") == event["new_value"]
    assert await service.get_config("app.database.url", reveal=True) == url


async def test_reads__connector_secrets__masked_everywhere_unless_revealed(
        service: ConfigService, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a Discord config with its webhook and a secret per-channel URL (no relay running)
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    hook, channel = ("https://discord.com/api/webhooks/1/hook-token-1",
                     "https://discord.com/api/webhooks/2/chan-token-2")
    config = {"webhook_url": hook, "username": "Bot", "channels": {"database": channel}}
    await service.set_config("integrations.discord", config)
    masked = {"webhook_url": "***", "username": "Bot", "channels": {"database": "***"}}
    # When read as a whole, by field, as an entry and in a listing / Then masked
    assert await service.get_config("integrations.discord") == masked
    assert await service.get_config("integrations.discord.webhook_url") == "***"
    assert await service.get_config("integrations.discord.channels.database") == "***"
    assert (await service.get_entry("integrations.discord"))["value"] == masked
    assert await service.get_configs("integrations.") == {"integrations.discord": masked}
    assert (await service.history("integrations.discord"))[0]["value"] == masked
    # And only an explicit reveal returns the stored secrets
    assert await service.get_config("integrations.discord", reveal=True) == config
    assert await service.get_config("integrations.discord.webhook_url", reveal=True) == hook
    assert (await service.get_entry("integrations.discord", reveal=True))["value"] == config
