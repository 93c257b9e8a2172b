"""Hostile or broken input is refused with a ConfigError naming the problem; nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from config_core import ConfigError, ConfigService
from config_core.state.events import outbox_key, outbox_keys
from config_core.state.values import WRITTEN_PART
from config_core.validation import MAX_CHANGED_BY_LENGTH, MAX_DEPTH, MAX_REASON_LENGTH
from connectors import BaseConnector
from connectors.settings import Setting, validate_config

LONE_SURROGATE = "\ud800"


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep, built without recursion."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def circular() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def assert_nothing_written(raw: redis.Redis, service: ConfigService) -> None:
    """No value, version or history: at most the outbox carrying a config.error event (and
    that event's idempotency record)."""
    written = f"{service.namespace.prefix}{WRITTEN_PART}"
    keys = {k for k in raw.scan_iter(f"{service.namespace.prefix}*") if not k.startswith(written)}
    assert keys - set(outbox_keys(service.namespace).values()) == set()


@pytest.mark.parametrize(("value", "message"), [
    (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH}"),
    (nested(5000), f"nested deeper than {MAX_DEPTH}"),
    ({"a": {"b": nested(MAX_DEPTH)}}, f"nested deeper than {MAX_DEPTH}"),
    (circular(), "contains itself"),
    (LONE_SURROGATE, "lone surrogate"),
    ({"ok": ["fine", f"x{LONE_SURROGATE}"]}, r"app\.x\.ok\[1\].*lone surrogate"),
    ({f"k{LONE_SURROGATE}": 1}, "lone surrogate"),
])
async def test_set_config__hostile_value__config_error_nothing_written(
        service: ConfigService, raw_redis: redis.Redis, value: Any, message: str) -> None:
    # Given an empty namespace / When a value that cannot be stored safely is set
    with pytest.raises(ConfigError, match=message):
        await service.set_config("app.x", value)
    # Then nothing was written
    assert_nothing_written(raw_redis, service)


async def test_set_config__nesting_at_the_limit__accepted(service: ConfigService) -> None:
    await service.set_config("app.x", nested(MAX_DEPTH - 1))
    assert await service.get_config("app.x") == nested(MAX_DEPTH - 1)


@pytest.mark.parametrize(("options", "message"), [
    ({"changed_by": f"me{LONE_SURROGATE}"}, "changed_by.*lone surrogate"),
    ({"reason": LONE_SURROGATE}, "reason.*lone surrogate"),
    ({"changed_by": "x" * (MAX_CHANGED_BY_LENGTH + 1)},
     f"changed_by is {MAX_CHANGED_BY_LENGTH + 1} characters; the limit is"),
    ({"reason": "x" * (MAX_REASON_LENGTH + 1)},
     f"reason is {MAX_REASON_LENGTH + 1} characters; the limit is {MAX_REASON_LENGTH}"),
    ({"metadata": ["not", "a", "dict"]}, "metadata must be a dict"),
    ({"metadata": "text"}, "metadata must be a dict"),
    ({"metadata": {"when": {1, 2}}}, "metadata"),
    ({"metadata": {"note": LONE_SURROGATE}}, "metadata.*lone surrogate"),
    ({"metadata": {"deep": nested(1000)}}, "metadata.*nested deeper"),
])
async def test_set_config__bad_change_details__config_error_nothing_written(
        service: ConfigService, raw_redis: redis.Redis, options: dict[str, Any],
        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await service.set_config("app.x", 1, **options)
    assert_nothing_written(raw_redis, service)


async def test_set_config__refused_change_kept_on_existing_key__value_history_unchanged(
        service: ConfigService) -> None:
    # Given a key with a value / When a circular and a too-deep value are set
    await service.set_config("app.x", "before")
    for value in (circular(), nested(2000)):
        with pytest.raises(ConfigError):
            await service.set_config("app.x", value, reason=LONE_SURROGATE)
    # Then the value, version and history are unchanged
    assert (await service.get_entry("app.x"))["version"] == 1
    assert await service.get_config("app.x") == "before"
    assert len(await service.history("app.x")) == 1


@pytest.mark.parametrize(("key", "message"), [
    (123, "key must be a string"), ("", "key must be a non-empty string"),
    (None, "key must be a string")])
async def test_emit_event__key_not_a_string__config_error(
        service: ConfigService, raw_redis: redis.Redis, key: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await service.emit_event("security.violation", key)
    assert_nothing_written(raw_redis, service)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("integrations.splunk.flush_interval", int("9" * 400),
     r"integrations\.splunk\.flush_interval must be between"),
    ("integrations.splunk.flush_interval", 1e300, r"integrations\.splunk\.flush_interval"),
    ("integrations.okta.sync_interval", 10 ** 13, r"integrations\.okta\.sync_interval"),
    ("integrations.batching", {"batch_size": 10 ** 9}, r"integrations\.batching\.batch_size"),
    ("integrations.batching", {"batch_timeout": int("9" * 400)},
     r"integrations\.batching\.batch_timeout"),
    ("integrations.batching", {"max_retries": 10 ** 6}, r"integrations\.batching\.max_retries"),
    ("integrations.max_backlog", 10 ** 15, r"integrations\.max_backlog"),
])
async def test_set_config__absurd_number_in_settings__config_error_naming_field(
        service: ConfigService, raw_redis: redis.Redis, key: str, value: Any,
        message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await service.set_config(key, value)
    assert_nothing_written(raw_redis, service)


async def test_set_config__key_with_lone_surrogate__config_error_event_recorded_escaped(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no relay, so the config.error event stays in the outbox
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    # When a key with a lone surrogate is set / Then refused as an invalid key
    with pytest.raises(ConfigError, match="is invalid"):
        await service.set_config(f"app.{LONE_SURROGATE}", 1)
    # And the refusal is still reported, the key written with the surrogate escaped
    [(_, fields)] = raw_redis.xrange(outbox_key(service.namespace))
    assert '"key":"app.\\\\ud800"' in fields["e"]
    assert_nothing_written(raw_redis, service)


class OpenConnector(BaseConnector):
    """A custom connector that declares no settings: any dict config is accepted."""

    def send_notification(self, event: dict[str, Any]) -> None:
        return None


async def test_register_connector__circular_config__config_error_nothing_written(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    with pytest.raises(ConfigError, match="contains itself"):
        await service.register_connector("open", OpenConnector({"loop": circular()}))
    assert_nothing_written(raw_redis, service)


@pytest.mark.parametrize("value", [0, 3601, 1e300, float("nan")])
def test_setting__number_outside_declared_bounds__config_error_naming_field(value: Any) -> None:
    # Given a setting with its own bounds / When a value outside them is validated / Then refused
    setting = Setting("poll_s", kind=(int, float), minimum=1, maximum=3600)
    with pytest.raises(ConfigError, match=r"integrations\.x\.poll_s must be between 1 and 3600"):
        validate_config("integrations.x", [setting], {"poll_s": value})
    assert validate_config("integrations.x", [setting], {"poll_s": 3600}) == {"poll_s": 3600}
