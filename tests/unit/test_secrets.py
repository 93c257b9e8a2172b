"""Secrets stay masked in events, history and reads, except an explicit admin reveal."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
import redis

from config_core import ConfigError, ConfigService
from connectors import BaseConnector
from connectors.settings import Setting

DB_SECRET = "postgres-password-not-for-events"


class DatabaseSinkConnector(BaseConnector):
    """A custom connector whose secret setting has a name that does not look secret."""

    settings: ClassVar[tuple[Setting, ...]] = (
        Setting("endpoint_for_db", secret=True), Setting("label"))

    def send_notification(self, event: dict[str, Any]) -> None:
        return None


def outbox_events(raw: redis.Redis, service: ConfigService) -> list[dict[str, Any]]:
    return [json.loads(fields["e"]) for _, fields in raw.xrange(service.namespace.outbox)
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
