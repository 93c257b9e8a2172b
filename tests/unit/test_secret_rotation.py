"""Rotating a connector's secret: declared secret fields only, one atomic write, nothing shown."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import redis

from config_core import ConfigError, ConfigService
from config_core.state.events import outbox_key
from config_core.state.values import value_key
from connectors.registry import BUILTIN, builtin_class
from tests.fakes.discord import FakeDiscord

OLD_TOKEN = "zendesk-old-token-4f1c9a"
NEW_TOKEN = "zendesk-new-token-8b2d7e"
CONFIGS: dict[str, dict[str, Any]] = {
    "zendesk": {"subdomain": "yourcompany", "email": "admin@yourcompany.com",
                "api_token": OLD_TOKEN},
    "newrelic": {"account_id": "1234567", "api_key": "nr-old-key"},
    "github": {"token": "ghp_old-token", "organization": "yourcompany"},
}
SECRET_FIELD = {"zendesk": "api_token", "newrelic": "api_key", "github": "token"}


def outbox_events(raw: redis.Redis, service: ConfigService) -> list[dict[str, Any]]:
    return [json.loads(fields["e"]) for _, fields in raw.xrange(outbox_key(service.namespace))
            if "e" in fields]


def namespace_dump(raw: redis.Redis, service: ConfigService) -> str:
    """Every key of the namespace and its content as text, except the stored values
    themselves (the one place a secret is kept: the ``value`` field of a value hash)."""
    parts = []
    for key in sorted(raw.scan_iter(f"{service.namespace.prefix}*")):
        kind = raw.type(key)
        if kind == "string":
            parts.append(raw.get(key) or "")
        elif kind == "hash":
            fields = raw.hgetall(key)
            if key.startswith(value_key(service.namespace, "")):
                fields.pop("value", None)
            parts.append(json.dumps(fields))
        elif kind == "list":
            parts.append(json.dumps(raw.lrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(json.dumps(raw.xrange(key)))
        elif kind == "zset":
            parts.append(json.dumps(raw.zrange(key, 0, -1)))
        elif kind == "set":
            parts.append(json.dumps(sorted(raw.smembers(key))))
        parts.append(key)
    return "\n".join(parts)


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No relay runs: the events stay in the outbox, where the test reads them."""
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")


async def test_rotate_secret__declared_secret_field__applied_one_masked_rotation_event(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given zendesk configured with its API token
    await service.set_config("integrations.zendesk", CONFIGS["zendesk"])
    # When the token is rotated
    result = await service.rotate_secret("integrations.zendesk.api_token", NEW_TOKEN,
                                         changed_by="secops@company.com", reason="quarterly")
    # Then the new token is stored, the rest of the config kept
    stored = await service.get_config("integrations.zendesk", reveal=True)
    assert stored == {**CONFIGS["zendesk"], "api_token": NEW_TOKEN}
    assert result.status == "applied" and result.version == 2
    # And exactly one event says so, with both values masked
    last = outbox_events(raw_redis, service)[-1]
    assert last["event_id"] == result.event_id
    assert last["type"] == "security.secret_rotated"
    assert last["key"] == "integrations.zendesk.api_token"
    assert (last["old_value"], last["new_value"]) == ("***", "***")
    assert last["metadata"] == {"connector": "zendesk", "field": "api_token"}
    assert last["changed_by"] == "secops@company.com" and last["reason"] == "quarterly"


async def test_rotate_secret__field_not_declared_secret__config_error_nothing_written(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given zendesk configured
    await service.set_config("integrations.zendesk", CONFIGS["zendesk"])
    before = raw_redis.xlen(outbox_key(service.namespace))
    # When a field that is not secret, a whole config, a key outside integrations and an
    # unknown connector's field are "rotated"
    for key, field in (("integrations.zendesk.email", "integrations.zendesk.email"),
                       ("integrations.zendesk", "integrations.zendesk"),
                       ("app.database.password", "app.database.password"),
                       ("integrations.nosuch.token", "integrations.nosuch")):
        with pytest.raises(ConfigError) as refused:
            await service.rotate_secret(key, "someone@company.com")
        # Then each refusal names the field and says what is wrong
        assert field in str(refused.value) and "secret" in str(refused.value)
    # And nothing was written: same version, same config, no event
    assert (await service.get_entry("integrations.zendesk"))["version"] == 1
    assert await service.get_config("integrations.zendesk", reveal=True) == CONFIGS["zendesk"]
    assert raw_redis.xlen(outbox_key(service.namespace)) == before


async def test_rotate_secret__value_breaks_the_setting__config_error_old_value_kept(
        service: ConfigService, quiet: None) -> None:
    # Given github configured with a token
    await service.set_config("integrations.github", CONFIGS["github"])
    # When the new token does not pass the setting's check (same validation as set_config)
    with pytest.raises(ConfigError, match=r"integrations\.github\.token"):
        await service.rotate_secret("integrations.github.token", "has spaces in it")
    # Then the old token stays
    assert await service.get_config("integrations.github.token", reveal=True) == "ghp_old-token"


@pytest.mark.parametrize("connector", ["zendesk", "newrelic", "github"])
async def test_set_config__guide_rotation_loop_api_key__written_to_the_vendor_field(
        service: ConfigService, raw_redis: redis.Redis, quiet: None, connector: str) -> None:
    # Given the connector configured as the guide shows
    await service.set_config(f"integrations.{connector}", CONFIGS[connector])
    # When the guide's rotation loop sets integrations.<connector>.api_key
    new_key = f"{connector}-new-key-3c9e"
    result = await service.set_config(f"integrations.{connector}.api_key", new_key)
    # Then the connector's own secret field holds it, and no api_key field appeared
    field = SECRET_FIELD[connector]
    stored = await service.get_config(f"integrations.{connector}", reveal=True)
    assert stored == {**CONFIGS[connector], field: new_key}
    # And the change is a masked rotation of that field
    last = outbox_events(raw_redis, service)[-1]
    assert (last["type"], last["key"]) == ("security.secret_rotated",
                                           f"integrations.{connector}.{field}")
    assert result.key == f"integrations.{connector}.{field}"
    assert (last["old_value"], last["new_value"]) == ("***", "***")


async def test_set_config__secret_field_first_set_or_same_value__config_changed(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given zendesk configured without a token yet
    for field in ("subdomain", "email"):
        await service.set_config(f"integrations.zendesk.{field}", CONFIGS["zendesk"][field])
    # When the token is set for the first time, and then set again to the same value
    await service.set_config("integrations.zendesk.api_token", OLD_TOKEN)
    await service.set_config("integrations.zendesk.api_token", OLD_TOKEN)
    # Then neither is a rotation: nothing was replaced
    types = [e["type"] for e in outbox_events(raw_redis, service)[-2:]]
    assert types == ["config.changed", "config.changed"]
    # When it is replaced by another value / Then that is a rotation
    await service.set_config("integrations.zendesk.api_token", NEW_TOKEN)
    assert outbox_events(raw_redis, service)[-1]["type"] == "security.secret_rotated"


async def test_set_config__api_key_alias_on_connector_without_it__unknown_setting(
        service: ConfigService, quiet: None) -> None:
    # Given discord, which declares no api_key alias
    await service.set_config("integrations.discord",
                             {"webhook_url": "https://discord.com/api/webhooks/1/tok"})
    # When api_key is set on it / Then it is refused as before, naming the setting
    with pytest.raises(ConfigError, match="api_key"):
        await service.set_config("integrations.discord.api_key", "x")


async def test_rotate_secret__with_deliveries__neither_value_in_events_history_ledger_logs(
        service: ConfigService, raw_redis: redis.Redis, discord_fake: FakeDiscord,
        caplog: pytest.LogCaptureFixture) -> None:
    # Given eager delivery to Discord and zendesk, and the routing that sends it every change
    caplog.set_level(logging.DEBUG)
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await service.set_config("integrations.zendesk", CONFIGS["zendesk"])
    # When the token is rotated twice: by rotate_secret, then by the guide's loop
    first = await service.rotate_secret("integrations.zendesk.api_token", NEW_TOKEN)
    second = await service.set_config("integrations.zendesk.api_key", OLD_TOKEN + "-2")
    # Then both were delivered (ledger rows exist) ...
    for result in (first, second):
        rows = await service.get_deliveries(result.event_id or "")
        assert {r["connector"] for r in rows} >= {"discord"}
    # ... and no event, history entry, ledger row, log line or message shows any token
    dumped = namespace_dump(raw_redis, service)
    assert "security.secret_rotated" in dumped
    history = json.dumps(await service.history("integrations.zendesk.api_token"))
    for token in (OLD_TOKEN, NEW_TOKEN, OLD_TOKEN + "-2"):
        assert token not in dumped
        assert token not in history
        assert token not in caplog.text
        assert token not in json.dumps(discord_fake.messages())


def test_builtin_aliases__every_connector__target_a_secret_never_shadow_a_setting() -> None:
    # Given every built-in connector
    for name in BUILTIN:
        cls = builtin_class(name)
        assert cls is not None
        # When its aliases are read
        aliases = cls.field_aliases()
        # Then none shadows a declared setting, and each names a declared secret setting
        assert not set(aliases) & {s.name for s in cls.settings}, name
        assert set(aliases.values()) <= cls.secret_fields(), name
    # And the guide's api_key reaches the secret of zendesk and github
    assert [builtin_class(n).field_aliases()["api_key"]  # type: ignore[union-attr]
            for n in ("zendesk", "github")] == ["api_token", "token"]


async def test_env_reference__variable_unset_in_the_worker__delivery_dead_naming_it(
        service: ConfigService, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given zendesk configured by reference, as the docs recommend, and no such variable
    monkeypatch.delenv("APGCFG_TEST_ZENDESK_TOKEN", raising=False)
    await service.set_config("integrations.zendesk", {
        **CONFIGS["zendesk"], "api_token": "${env:APGCFG_TEST_ZENDESK_TOKEN}",
        "ticket_all_changes": True})
    # When a change is delivered (eagerly, in this process)
    result = await service.set_config("app.database.host", "prod-db.internal")
    # Then the delivery is dead at once, and the reason names the variable
    [row] = await service.get_deliveries(result.event_id or "")
    assert (row["status"], row["attempts"]) == ("dead", 1)
    assert "unset environment variable APGCFG_TEST_ZENDESK_TOKEN" in row["last_error"]
    # And what is stored is the reference, not a secret
    assert await service.get_config("integrations.zendesk.api_token", reveal=True) == (
        "${env:APGCFG_TEST_ZENDESK_TOKEN}")


async def test_get_config__api_key_alias__reads_the_field_it_stands_for(
        service: ConfigService, quiet: None) -> None:
    # Given zendesk and github, whose secrets are named api_token and token
    for name in ("zendesk", "github"):
        await service.set_config(f"integrations.{name}", CONFIGS[name])
    # When each is read back by the guide's name for it, api_key
    masked = [await service.get_config(f"integrations.{n}.api_key") for n in ("zendesk", "github")]
    revealed = [await service.get_config(f"integrations.{n}.api_key", reveal=True)
                for n in ("zendesk", "github")]
    # Then the reads are those of the declared fields: masked, or as stored when revealed
    assert masked == ["***", "***"]
    assert revealed == [OLD_TOKEN, "ghp_old-token"]
    # And a connector without the alias still has no such field
    await service.set_config("integrations.discord",
                             {"webhook_url": "https://discord.com/api/webhooks/1/tok"})
    assert await service.get_config("integrations.discord.api_key", None) is None


async def test_get_entry__connector_field_or_its_alias__value_and_the_connector_version(
        service: ConfigService, quiet: None) -> None:
    # Given zendesk configured as one dict, then its token rotated by the guide's name
    await service.set_config("integrations.zendesk", CONFIGS["zendesk"])
    await service.set_config("integrations.zendesk.api_key", NEW_TOKEN)
    # When single fields are read as entries (what GET /v1/configs/{key} answers)
    alias = await service.get_entry("integrations.zendesk.api_key")
    field = await service.get_entry("integrations.zendesk.api_token", reveal=True)
    plain = await service.get_entry("integrations.zendesk.subdomain")
    # Then each is the field's value (masked unless revealed) at the connector's version
    assert alias == {"key": "integrations.zendesk.api_key", "value": "***", "version": 2}
    assert field == {"key": "integrations.zendesk.api_token", "value": NEW_TOKEN, "version": 2}
    assert plain["value"] == "yourcompany"
    # And a field that is not set is still unknown
    with pytest.raises(KeyError):
        await service.get_entry("integrations.zendesk.default_assignee")
