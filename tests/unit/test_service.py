"""ConfigService against a real Redis, with deliveries run inline (eager mode)."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from config_core import ConfigError, ConfigService, IntegrationError
from config_core.state.events import outbox_key, outbox_keys
from config_core.state.values import WRITTEN_PART
from tests.conftest import UNIT_DB, redis_url


def namespace_keys(raw: redis.Redis, service: ConfigService) -> list[str]:
    return sorted(raw.scan_iter(f"{service.namespace.prefix}*"))


async def test_set_config__new_key__applied_with_version_and_history(
        service: ConfigService) -> None:
    # Given an empty namespace / When a key is set twice
    first = await service.set_config("app.database.host", "localhost")
    second = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then
    assert (first.status, first.version, second.version) == ("applied", 1, 2)
    assert second.event_id and second.event_id != first.event_id
    assert await service.get_config("app.database.host") == "prod-db.internal"
    newest = (await service.history("app.database.host"))[0]
    assert newest["version"] == 2 and newest["value"] == "prod-db.internal"
    assert (newest["changed_by"], newest["reason"]) == ("admin@company.com", "database migration")
    assert newest["event_id"] == second.event_id and newest["local_only"] is False


async def test_get_config__missing__default_or_key_error(service: ConfigService) -> None:
    assert await service.get_config("app.nope", default=7) == 7
    with pytest.raises(KeyError):
        await service.get_config("app.nope")


async def test_get_configs__prefix__only_matching_keys(service: ConfigService) -> None:
    for key, value in (("app.a", 1), ("app.b", {"x": [1]}), ("apple", 2), ("other.c", 3)):
        await service.set_config(key, value)
    assert await service.get_configs("app.") == {"app.a": 1, "app.b": {"x": [1]}}
    assert set(await service.get_configs()) == {"app.a", "app.b", "apple", "other.c"}


async def test_set_config__concurrent_writers__distinct_versions(service: ConfigService) -> None:
    # Given 40 writers on two connections pools / When all write one key at once
    other = ConfigService(redis_url=redis_url(UNIT_DB), environment="production",
                          tenant=service.tenant)
    writes = [(service if i % 2 else other).set_config("app.counter", i) for i in range(40)]
    results = await asyncio.gather(*writes)
    await other.close()
    # Then every writer got its own version and history holds each exactly once
    assert sorted(r.version for r in results) == list(range(1, 41))
    history = await service.history("app.counter", limit=100)
    assert sorted(entry["version"] for entry in history) == list(range(1, 41))


async def test_set_config_local_only__no_event__history_says_so(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    result = await service.set_config_local_only("app.x", 1, changed_by="ops")
    assert result.event_id is None and result.version == 1
    entry = (await service.history("app.x"))[0]
    assert entry["local_only"] is True and entry["event_id"] is None
    assert raw_redis.xlen(outbox_key(service.namespace)) == 0
    assert not list(raw_redis.scan_iter(f"{service.namespace.prefix}event:*"))


@pytest.mark.parametrize(("key", "value"), [
    ("bad key", 1), ("app..x", 1), ("a" * 257, 1), ("app.x", {1, 2}), ("app.x", "x" * 70000),
    ("app.x", float("inf")),
    ("integrations.discord", {"username": "bot"}),
    ("integrations.discord", {"webhook_url": "ftp://x"}),
    ("integrations.discord", {"webhook_url": "https://discord.com/api/webhooks/1/t", "bogus": 1}),
    ("integrations.discord", "not a dict"),
    ("integrations.unknown_thing", {"a": 1}),
    ("integrations.notifications", {"triggers": {"t": {"patterns": ["a"], "connectors": "x"}}}),
    ("integrations.max_backlog", 0),
])
async def test_set_config__bad_input__config_error_and_nothing_written(
        service: ConfigService, raw_redis: redis.Redis, key: str, value: object) -> None:
    with pytest.raises(ConfigError):
        await service.set_config(key, value)
    # nothing but the outboxes, one of which carried the config.error event (and that write's
    # record)
    written = f"{service.namespace.prefix}{WRITTEN_PART}"
    kept = [k for k in namespace_keys(raw_redis, service) if not k.startswith(written)]
    assert kept == sorted(outbox_keys(service.namespace).values())


async def test_set_config__bad_changed_by__config_error(service: ConfigService) -> None:
    with pytest.raises(ConfigError, match="changed_by"):
        await service.set_config("app.x", 1, changed_by=["me"])  # type: ignore[arg-type]


async def test_set_config__outbox_unwritable__integration_error_value_unchanged(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    # Given a value, then an outbox key that is not a stream
    await service.set_config("app.x", "before")
    raw_redis.delete(outbox_key(service.namespace))
    raw_redis.set(outbox_key(service.namespace), "corrupt")
    # When / Then
    with pytest.raises(IntegrationError, match="not a stream"):
        await service.set_config("app.x", "after")
    assert await service.get_config("app.x") == "before"
    assert len(await service.history("app.x")) == 1


async def test_set_config__redis_script_cache_flushed__write_still_applied_once(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    # Given a first write (the write script is cached in Redis)
    await service.set_config("app.flushed", "before")
    # When Redis forgets its scripts (a restart without persistence, SCRIPT FLUSH)
    raw_redis.script_flush()
    result = await service.set_config("app.flushed", "after")
    # Then the next write loads the script again and applies once
    assert (result.status, result.version) == ("applied", 2)
    assert await service.get_config("app.flushed") == "after"
    assert len(await service.history("app.flushed")) == 2


async def test_set_config__backlog_full__integration_error_value_unchanged(
        service: ConfigService, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no relay running (not eager) and a backlog limit of 2
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    await service.set_config("integrations.max_backlog", 2)
    await service.set_config("app.x", 1)
    # When the outbox already holds 2 undelivered events
    with pytest.raises(IntegrationError, match="max_backlog is 2"):
        await service.set_config("app.x", 2)
    # Then the value is unchanged, and a local-only write still works
    assert await service.get_config("app.x") == 1
    await service.set_config_local_only("app.x", 3)
    assert await service.get_config("app.x") == 3


async def test_delete_config__existing__deleted_event_and_next_version(
        service: ConfigService) -> None:
    await service.set_config("app.x", 1)
    deleted = await service.delete_config("app.x", changed_by="ops")
    assert deleted.version == 2 and deleted.event_id
    with pytest.raises(KeyError):
        await service.get_config("app.x")
    again = await service.set_config("app.x", 5)
    assert again.version == 3
    assert [e["op"] for e in await service.history("app.x")] == ["set", "delete", "set"]
    with pytest.raises(KeyError):
        await service.delete_config("app.never")


async def test_stream_event__non_eager__complete_document_with_old_value(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no relay, so the event stays in the outbox
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    await service.set_config("app.database.password", "old-secret-1")
    result = await service.set_config("app.database.password", "new-secret-2",
                                      changed_by="admin@company.com", reason="rotate")
    # When reading the outbox entry
    entries = raw_redis.xrange(outbox_key(service.namespace))
    event = json.loads(entries[-1][1]["e"])
    # Then it is the full event document, with both values masked
    assert event["event_id"] == result.event_id and event["version"] == 2
    assert (event["old_value"], event["new_value"]) == ("***", "***")
    assert event["type"] == "config.changed" and event["schema_version"] == 1
    assert event["tenant"] == service.tenant and event["environment"] == "production"
    assert event["timestamp"].endswith("Z") and isinstance(event["timestamp_epoch"], float)
    assert "secret" not in json.dumps([fields for _, fields in entries])


async def test_refused_change__config_error_event_recorded_with_masked_value(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no relay, so events stay in the outbox
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    # When a connector config with a secret is refused
    with pytest.raises(ConfigError, match="username"):
        await service.set_config("integrations.discord", {
            "webhook_url": "https://discord.com/api/webhooks/1/very-secret-token",
            "username": "discord bot"}, changed_by="ops@company.com")
    # Then one config.error event says why, without the secret
    [(_, fields)] = raw_redis.xrange(outbox_key(service.namespace))
    event = json.loads(fields["e"])
    assert event["type"] == "config.error" and event["key"] == "integrations.discord"
    assert event["metadata"]["error_kind"] == "validation"
    assert "username" in event["metadata"]["error"]
    assert event["new_value"]["webhook_url"] == "***" and event["changed_by"] == "ops@company.com"
    assert "very-secret-token" not in fields["e"]


async def test_schemas__value_breaks_schema__refused_with_schema_error_event(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a schema for app.database.port
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    await service.set_config("integrations.schemas", {
        "app.database.port": {"type": "integer", "minimum": 1, "maximum": 65535}})
    await service.set_config("app.database.port", 5432)
    # When a value breaks it / Then refused, value unchanged, config.error of kind schema
    with pytest.raises(ConfigError, match=r"does not match the schema for 'app\.database\.port'"):
        await service.set_config("app.database.port", 70000)
    assert await service.get_config("app.database.port") == 5432
    event = json.loads(raw_redis.xrange(outbox_key(service.namespace))[-1][1]["e"])
    assert (event["type"], event["metadata"]["error_kind"]) == ("config.error", "schema")
    assert event["metadata"]["schema_pattern"] == "app.database.port"


async def test_schemas__changed_by_another_writer__next_write_checked_against_new_schema(
        service: ConfigService) -> None:
    # Given this service has cached "no schemas"
    await service.set_config("app.mode", "fast")
    other = ConfigService(redis_url=redis_url(UNIT_DB), environment="production",
                          tenant=service.tenant)
    # When another process adds a schema
    await other.set_config("integrations.schemas", {"app.*": {"type": "string"}})
    await other.close()
    # Then this service's next write is checked against it, not the stale cache
    with pytest.raises(ConfigError, match="schema"):
        await service.set_config("app.mode", 3)


@pytest.mark.parametrize("schemas", [[], {"app.*": {"type": "no-such-type"}}, {"a": 5}])
async def test_schemas__invalid_schema__config_error(service: ConfigService,
                                                     schemas: object) -> None:
    with pytest.raises(ConfigError, match=r"integrations\.schemas"):
        await service.set_config("integrations.schemas", schemas)


async def test_emit_event__security_violation__recorded_masked_and_routed(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    event_id = await service.emit_event("security.violation", "app.db.password",
                                        value="hunter22", changed_by="mallory@x",
                                        metadata={"required_role": "admin"})
    [(_, fields)] = raw_redis.xrange(outbox_key(service.namespace))
    event = json.loads(fields["e"])
    assert (event["event_id"], event["type"], event["new_value"]) == (
        event_id, "security.violation", "***")
    assert event["metadata"] == {"required_role": "admin"} and "hunter22" not in fields["e"]
    assert await service.get_configs() == {}
