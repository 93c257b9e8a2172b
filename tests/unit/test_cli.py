"""The apgcfg commands, run in-process against the unit-test Redis in eager mode."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from apgcfg.cli import main, parse_value
from config_core import ConfigService
from config_core.state import apikeys
from tests.conftest import UNIT_DB, redis_url
from tests.fakes.discord import FakeDiscord


@pytest.fixture
def cli(eager: None, tenant: str, redis_server: str):
    """Run ``apgcfg ARGS`` in a namespace of its own; return (exit code, parsed stdout)."""
    def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, object, str]:
        code = main([*args, "--json", "--redis-url", redis_url(UNIT_DB), "--tenant", tenant,
                     "--environment", "production"])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out.strip() else None, err
    return run


def test_parse_value__json_or_plain_string() -> None:
    assert parse_value('{"a": [1]}') == {"a": [1]}
    assert parse_value("5433") == 5433
    assert parse_value("prod-db.internal") == "prod-db.internal"


def test_set_get_list_history__round_trip(cli, capsys: pytest.CaptureFixture[str]) -> None:
    code, result, _ = cli("set", "app.database.host", "prod-db", "--by", "ops", "--reason", "mig",
                          capsys=capsys)
    assert code == 0 and result["status"] == "applied" and result["version"] == 1
    assert cli("get", "app.database.host", capsys=capsys)[1] == "prod-db"
    assert cli("list", "app.", capsys=capsys)[1] == {"app.database.host": "prod-db"}
    history = cli("history", "app.database.host", capsys=capsys)[1]
    assert [(h["version"], h["changed_by"], h["reason"]) for h in history] == [(1, "ops", "mig")]


def test_refusals__one_line_on_stderr__exit_2_bad_input_3_not_found(
        cli, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli("set", "bad key", "1", capsys=capsys)
    assert (code, out) == (2, None) and "config key 'bad key' is invalid" in err
    assert "Traceback" not in err and err.count("\n") == 1
    code, _, err = cli("get", "app.missing", capsys=capsys)
    assert code == 3 and "not found: app.missing" in err


def test_deliveries_dead_replay__through_the_ledger(
        cli, capsys: pytest.CaptureFixture[str], discord_fake: FakeDiscord) -> None:
    # Given Discord configured with a webhook that is then deleted
    url = discord_fake.add_webhook()
    assert cli("set", "integrations.discord.webhook_url", url, capsys=capsys)[0] == 0
    discord_fake.delete_webhook(url)
    event_id = cli("set", "app.x", "1", capsys=capsys)[1]["event_id"]
    # When / Then the delivery is dead, listed, and delivered once replayed
    assert cli("deliveries", event_id, capsys=capsys)[1][0]["status"] == "dead"
    assert [d["event_id"] for d in cli("dead", capsys=capsys)[1]] == [event_id]
    discord_fake.add_webhook(*url.rsplit("/", 2)[1:])
    assert cli("replay", event_id, capsys=capsys)[0] == 0
    assert cli("deliveries", event_id, capsys=capsys)[1][0]["status"] == "delivered"
    assert cli("health", capsys=capsys)[1]["discord"]["status"] == "healthy"


def test_get_list__secret_values__masked_unless_get_reveal(
        cli, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a secret key and a URL with a password
    assert cli("set", "app.db.password", "hunter2-pw", capsys=capsys)[0] == 0
    assert cli("set", "app.db.url", "postgres://app:hunter3-pw@db/x", capsys=capsys)[0] == 0
    # When read / Then masked by get and list, shown by get --reveal only
    assert cli("get", "app.db.password", capsys=capsys)[1] == "***"
    assert cli("list", "app.db.", capsys=capsys)[1] == {
        "app.db.password": "***", "app.db.url": "postgres://app:***@db/x"}
    assert cli("get", "app.db.password", "--reveal", capsys=capsys)[1] == "hunter2-pw"
    assert cli("get", "app.db.url", "--reveal", capsys=capsys)[1] == (
        "postgres://app:hunter3-pw@db/x")


def test_set__same_idempotency_key_twice__applied_once(
        cli, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a change made with an idempotency key / When the same command runs again
    first = cli("set", "app.k", "1", "--idempotency-key", "deploy-7", capsys=capsys)[1]
    again = cli("set", "app.k", "1", "--idempotency-key", "deploy-7", capsys=capsys)[1]
    # Then it was applied once, and the second run prints the first's result
    assert first["version"] == again["version"] == 1
    assert first["event_id"] == again["event_id"]
    assert len(cli("history", "app.k", capsys=capsys)[1]) == 1


def test_status__no_worker__namespace_backlog_and_no_relay(
        cli, capsys: pytest.CaptureFixture[str]) -> None:
    code, status, _ = cli("status", "--timeout-s", "0.1", capsys=capsys)
    assert code == 0 and status["outbox"] == 0 and status["dead"] == 0
    assert status["relays"] == []  # no worker ever runs on the unit database


@pytest.fixture
def cli_lines(eager: None, tenant: str, redis_server: str):
    """Run ``apgcfg ARGS``; return (exit code, stdout lines, stderr)."""
    def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
        code = main([*args, "--json", "--redis-url", redis_url(UNIT_DB), "--tenant", tenant,
                     "--environment", "production"])
        out, err = capsys.readouterr()
        return code, out.strip().splitlines(), err
    return run


def authenticates(tenant: str, key: str) -> bool:
    """Whether the HTTP API would accept ``key`` now."""
    async def check() -> bool:
        async with ConfigService(redis_url=redis_url(UNIT_DB), environment="production",
                                 tenant=tenant) as service:
            found = await apikeys.authenticate(service.store.redis, service.namespace, key)
            return found is not None
    return asyncio.run(check())


def test_apikeys_rotate__overlap__new_key_same_role_old_key_works_until_it_ends(
        cli_lines, tenant: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a write key of a deploy bot
    code, lines, _ = cli_lines("apikeys", "create", "--role", "write", "--name", "deploy-bot",
                               "--owner", "bot@company.com", capsys=capsys)
    old_key = lines[-1]
    old_id = json.loads(lines[0])["id"]
    # When it is rotated with an overlap of one second
    started = time.time()
    code, lines, err = cli_lines("apikeys", "rotate", old_id, "--overlap-s", "1", capsys=capsys)
    assert code == 0, err
    new_key = lines[-1]
    # Then the new key (printed last, once) has the old one's role, name and owner
    new = json.loads(lines[0])
    assert new_key.startswith(f"apg_{new['id']}_") and new["id"] != old_id
    assert (new["role"], new["name"], new["owner"]) == ("write", "deploy-bot", "bot@company.com")
    # And the listing shows both, the old one with its expiry, neither with its secret
    code, lines, _ = cli_lines("apikeys", "list", capsys=capsys)
    listed = {record["id"]: record for record in json.loads("\n".join(lines))}
    assert set(listed) == {old_id, new["id"]}
    assert started + 1 <= listed[old_id]["expires_at"] <= time.time() + 1
    assert listed[new["id"]]["expires_at"] is None
    assert old_key.split("_", 2)[2] not in "\n".join(lines)
    # And both keys work during the overlap; after it only the new one does
    assert authenticates(tenant, old_key) and authenticates(tenant, new_key)
    time.sleep(max(0.0, started + 1.1 - time.time()))
    assert not authenticates(tenant, old_key)
    assert authenticates(tenant, new_key)


def test_apikeys_rotate__unknown_revoked_or_expired__refused_nothing_created(
        cli_lines, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a revoked key and a key already rotated with no overlap
    revoked = json.loads(cli_lines("apikeys", "create", "--role", "read", capsys=capsys)[1][0])
    cli_lines("apikeys", "revoke", revoked["id"], capsys=capsys)
    rotated = json.loads(cli_lines("apikeys", "create", "--role", "read", capsys=capsys)[1][0])
    assert cli_lines("apikeys", "rotate", rotated["id"], "--overlap-s", "0",
                     capsys=capsys)[0] == 0
    count = len(json.loads("\n".join(cli_lines("apikeys", "list", capsys=capsys)[1])))
    # When each (and an unknown id) is rotated / Then refused on one line naming the id
    for key_id, why in ((revoked["id"], "revoked"), (rotated["id"], "expired"),
                        ("nope", "no API key")):
        code, lines, err = cli_lines("apikeys", "rotate", key_id, capsys=capsys)
        assert (code, lines) == (2, []) and key_id in err and why in err
    # And no key was made
    assert len(json.loads("\n".join(cli_lines("apikeys", "list", capsys=capsys)[1]))) == count


def test_connectors__list_pause_resume__table_and_json(
        cli, cli_lines, tenant: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a configured connector
    cli("set", "integrations.discord",
        '{"webhook_url": "https://discord.com/api/webhooks/1/abc"}', capsys=capsys)
    # When it is paused, listed as a table and as JSON, then resumed
    code = main(["connectors", "pause", "discord", "--reason", "maintenance", "--redis-url",
                 redis_url(UNIT_DB), "--tenant", tenant, "--environment", "production"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[0].split()[:4] == ["NAME", "STATUS", "PAUSED", "WAITING"]
    assert lines[1].split()[:3] == ["discord", "unchecked", "true"]
    code, listed, _ = cli("connectors", "list", "--json", capsys=capsys)
    assert listed[0]["paused"] is True and listed[0]["paused_reason"] == "maintenance"
    code, resumed, _ = cli("connectors", "resume", "discord", "--json", capsys=capsys)
    assert code == 0 and resumed[0]["paused"] is False
    # Then an unknown connector is not found (exit 3), no name is bad input (exit 2)
    code, _, err = cli_lines("connectors", "pause", "jira", capsys=capsys)
    assert code == 3 and "jira" in err
    code, _, err = cli_lines("connectors", "resume", capsys=capsys)
    assert code == 2 and "needs the connector's name" in err
