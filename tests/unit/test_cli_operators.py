"""apgcfg diff, rollback, replay by connector and window, status and human output (eager)."""

from __future__ import annotations

import json
import time

import pytest

from apgcfg.cli import main
from apgcfg.diffing import changes_between
from apgcfg.replaying import parse_time
from config_core.errors import ConfigError
from tests.conftest import UNIT_DB, redis_url
from tests.fakes.discord import FakeDiscord


@pytest.fixture
def run(eager: None, tenant: str, redis_server: str):
    """Run ``apgcfg ARGS`` in this test's namespace; return (exit code, stdout, stderr)."""
    def call(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        code = main([*args, "--redis-url", redis_url(UNIT_DB), "--tenant", tenant,
                     "--environment", "production"])
        out, err = capsys.readouterr()
        return code, out, err
    return call


def test_parse_time__iso_epoch_and_ago__epoch_seconds() -> None:
    assert parse_time("2026-12-05T10:00:00Z") == 1796464800.0
    assert parse_time("2026-12-05T10:00:00") == 1796464800.0
    assert parse_time("1796464800") == 1796464800.0
    assert parse_time("2h", now=10_000.0) == 10_000.0 - 7200
    with pytest.raises(ConfigError, match="'yesterday' is not ISO 8601"):
        parse_time("yesterday")


def test_changes_between__nested_dicts__path_per_field() -> None:
    old = {"host": "a", "pool": {"size": 5, "idle": 1}}
    new = {"host": "a", "pool": {"size": 10}, "tls": True}
    assert list(changes_between(old, new)) == [
        {"path": "pool.idle", "change": "removed", "from": 1, "to": None},
        {"path": "pool.size", "change": "changed", "from": 5, "to": 10},
        {"path": "tls", "change": "added", "from": None, "to": True}]
    assert list(changes_between(1, 1)) == [] and list(changes_between(1, 1.0)) != []


def test_diff__two_versions__changes_as_json_and_unified_text(
        run, capsys: pytest.CaptureFixture[str]) -> None:
    # Given three versions of a key
    for value in ('{"host": "a", "port": 1}', '{"host": "b", "port": 1}', '"c"'):
        assert run("set", "app.db", value, capsys=capsys)[0] == 0
    # When versions 1 and 2 are compared
    code, out, _ = run("diff", "app.db", "--from", "1", "--to", "2", "--json", capsys=capsys)
    # Then the one field that changed is listed
    diff = json.loads(out)
    assert code == 0 and diff["same"] is False
    assert diff["changes"] == [{"path": "host", "change": "changed", "from": "a", "to": "b"}]
    assert (diff["from"]["version"], diff["to"]["version"]) == (1, 2)
    # And without --to the newest version is the other side, printed as a unified diff
    code, out, _ = run("diff", "app.db", "--from", "1", capsys=capsys)
    assert code == 0 and "--- app.db v1" in out and "+++ app.db v3" in out
    assert '+"c"' in out and '-  "host": "a",' in out


def test_diff__unknown_version_or_key__exit_3_bad_options__exit_2(
        run, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("set", "app.db", "1", capsys=capsys)[0] == 0
    code, out, err = run("diff", "app.db", "--from", "7", capsys=capsys)
    assert (code, out) == (3, "") and "app.db has no version 7" in err
    assert run("diff", "app.nothing", "--from", "1", capsys=capsys)[0] == 3
    assert run("diff", "app.db", capsys=capsys)[0] == 2  # neither versions nor environments
    with pytest.raises(SystemExit) as usage:
        main(["diff", "app.db", "--from", "one"])
    assert usage.value.code == 2


def test_diff__two_environments__current_values_compared(
        run, tenant: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the key in production and in staging
    assert run("set", "app.flag", '{"on": true}', capsys=capsys)[0] == 0
    main(["set", "app.flag", '{"on": false}', "--redis-url", redis_url(UNIT_DB), "--tenant",
          tenant, "--environment", "staging"])
    capsys.readouterr()
    # When compared / Then the field differs, each side named by its environment
    code, out, _ = run("diff", "app.flag", "--other-environment", "staging", "--json",
                       capsys=capsys)
    diff = json.loads(out)
    assert code == 0 and diff["changes"] == [
        {"path": "on", "change": "changed", "from": True, "to": False}]
    assert diff["from"]["label"].startswith(f"{tenant}:production@")
    assert diff["to"]["label"].startswith(f"{tenant}:staging@")


def test_rollback__to_version__new_version_with_old_value_and_its_event(
        run, capsys: pytest.CaptureFixture[str]) -> None:
    # Given two versions of a key
    assert run("set", "app.db.host", "old-db", capsys=capsys)[0] == 0
    assert run("set", "app.db.host", "new-db", capsys=capsys)[0] == 0
    # When rolled back to version 1
    code, out, err = run("rollback", "app.db.host", "--to", "1", "--by", "ops@company.com",
                         "--json", capsys=capsys)
    # Then version 3 holds version 1's value, with an event, and history shows why
    result = json.loads(out)
    assert code == 0, err
    assert (result["status"], result["version"], result["rolled_back_to"]) == ("applied", 3, 1)
    assert result["event_id"]
    assert json.loads(run("get", "app.db.host", "--json", capsys=capsys)[1]) == "old-db"
    newest = json.loads(run("history", "app.db.host", "--json", capsys=capsys)[1])[0]
    assert (newest["version"], newest["changed_by"], newest["event_id"]) == (
        3, "ops@company.com", result["event_id"])
    assert newest["reason"] == "rollback of app.db.host to version 1"


def test_rollback__secret_or_missing_version__refused_nothing_written(
        run, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a secret key with two versions (history keeps them masked)
    assert run("set", "app.db.password", "first-pw", capsys=capsys)[0] == 0
    assert run("set", "app.db.password", "second-pw", capsys=capsys)[0] == 0
    # When rolled back / Then refused (exit 2) rather than writing "***"; an unknown version: 3
    code, _, err = run("rollback", "app.db.password", "--to", "1", capsys=capsys)
    assert code == 2 and "holds secrets" in err
    assert run("rollback", "app.db.password", "--to", "9", capsys=capsys)[0] == 3
    assert run("get", "app.db.password", "--reveal", capsys=capsys)[1].strip() == "second-pw"


def dead_discord_events(run, capsys, discord_fake: FakeDiscord, count: int) -> tuple[str, list]:
    url = discord_fake.add_webhook()
    assert run("set", "integrations.discord.webhook_url", url, capsys=capsys)[0] == 0
    discord_fake.delete_webhook(url)
    events = [json.loads(run("set", f"app.k{i}", "1", "--json", capsys=capsys)[1])["event_id"]
              for i in range(count)]
    return url, events


def test_replay__by_connector__every_dead_delivery_requested_with_progress(
        run, capsys: pytest.CaptureFixture[str], discord_fake: FakeDiscord) -> None:
    # Given three dead Discord deliveries, and the webhook back
    url, events = dead_discord_events(run, capsys, discord_fake, 3)
    discord_fake.add_webhook(*url.rsplit("/", 2)[1:])
    # When replayed by connector with a progress bar
    code, out, err = run("replay", "--connector", "discord", "--progress", "--json",
                         capsys=capsys)
    # Then all three were requested and delivered, and the bar counted to 3 on stderr
    result = json.loads(out)
    assert code == 0 and result["requested"] == 3
    assert sorted(d["event_id"] for d in result["deliveries"]) == sorted(events)
    assert "3/3" in err
    for event_id in events:
        rows = json.loads(run("deliveries", event_id, "--json", capsys=capsys)[1])
        assert rows[0]["status"] == "delivered"
    assert json.loads(run("dead", "--json", capsys=capsys)[1]) == []


def test_replay__window_before_the_deaths__nothing_requested(
        run, capsys: pytest.CaptureFixture[str], discord_fake: FakeDiscord) -> None:
    # Given dead deliveries
    dead_discord_events(run, capsys, discord_fake, 2)
    before = str(time.time() - 3600)
    # When the window ends an hour ago / Then nothing is replayed; a window from 1h ago: both
    code, out, _ = run("replay", "--until", before, "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["requested"] == 0
    code, out, _ = run("replay", "--since", "1h", "--connector", "discord", capsys=capsys)
    assert code == 0 and out.startswith("replay requested for 2 dead deliveries")


def test_replay__no_selector_or_bad_window__exit_2(run, capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    assert run("replay", capsys=capsys)[0] == 2
    code, _, err = run("replay", "--since", "1h", "--until", "2h", capsys=capsys)
    assert code == 2 and "is after --until" in err
    assert run("replay", "--since", "soon", capsys=capsys)[0] == 2
    assert run("replay", "0123abcd", capsys=capsys)[0] == 3  # an event with no deliveries


def test_status__human__summary_queues_and_sections(
        run, capsys: pytest.CaptureFixture[str], discord_fake: FakeDiscord) -> None:
    # Given a dead Discord delivery
    dead_discord_events(run, capsys, discord_fake, 1)
    # When status is shown to a person
    code, out, _ = run("status", "--timeout-s", "0.1", capsys=capsys)
    # Then the queues, the dead delivery per connector with its error, and the sections show
    assert code == 0
    assert "queues:" in out and "high 0  medium 0  low 0" in out
    assert "deliveries: 0 open, 1 dead" in out
    dead_line = next(line for line in out.splitlines() if line.startswith("discord"))
    assert " 1 " in dead_line and "404" in dead_line
    assert "RELAYS\n(none seen)" in out and "WORKERS\n(none answered)" in out


def test_status_json__queue_depth_dead_by_connector(
        run, capsys: pytest.CaptureFixture[str], discord_fake: FakeDiscord) -> None:
    dead_discord_events(run, capsys, discord_fake, 2)
    code, out, _ = run("status", "--timeout-s", "0.1", "--json", capsys=capsys)
    status = json.loads(out)
    assert code == 0 and set(status["queues"]) == {"high", "medium", "low"}
    assert status["dead_by_connector"]["discord"]["dead"] == 2
    assert status["workers"] == [] and status["dead"] == 2
