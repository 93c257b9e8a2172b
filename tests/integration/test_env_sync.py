"""Multi-environment sync between two real environments.

Staging and production each have their own Redis database, their own ``apgcfg serve`` on
loopback and their own ``celery -A workers worker``. Staging's worker pushes to production's
HTTP API every ``sync_interval`` (published by its relay's sweep); production's worker delivers
production's own events. Each test syncs its own key prefix, so tests do not see each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from config_core.state.keys import Namespace
from tests.conftest import redis_url
from tests.fakes.discord import FakeDiscord
from tests.integration.apiserver import ROOT, ApiServer
from tests.integration.polling import until
from tests.integration.workerproc import WorkerProcess
from workers import env_sync
from workers.redis_client import connect

pytestmark = pytest.mark.integration

STAGING_DB, PRODUCTION_DB = 10, 11
"""Databases no other test uses: one per environment."""

DBA = "dba-team@company.com"
WAIT_S = 60.0
"""Longest wait for a sync (the relay's sweep runs every 5 s; sync_interval is 1 s)."""


@dataclass
class Environments:
    staging: ApiServer
    production: ApiServer
    staging_admin: str
    production_admin: str
    production_writer: str
    production_sync_key: str
    production_dba: str
    workers: list[WorkerProcess]
    discord: FakeDiscord
    webhook_url: str


def _key(server: ApiServer, role: str, name: str, owner: str | None = None) -> str:
    done = server.cli("apikeys", "create", "--role", role, "--name", name,
                      *(["--owner", owner] if owner else []))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def envs(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Environments]:
    logs = tmp_path_factory.mktemp("env-sync")
    for db in (STAGING_DB, PRODUCTION_DB):
        redis.Redis.from_url(redis_url(db)).flushdb()
    staging = ApiServer(redis_url(STAGING_DB), "company", logs, environment="staging")
    production = ApiServer(redis_url(PRODUCTION_DB), "company", logs, environment="production")
    started: list[Any] = [staging, production]
    try:
        staging.wait_ready()
        production.wait_ready()
        sync_key = _key(production, "write", "sync-from-staging")
        workers = [WorkerProcess(redis_url(STAGING_DB), logs, prefix="staging",
                                 extra_env={"PRODUCTION_CONFIG_API_KEY": sync_key}),
                   WorkerProcess(redis_url(PRODUCTION_DB), logs, prefix="production")]
        started += workers
        for worker in workers:
            worker.wait_ready()
        with FakeDiscord() as discord:
            yield Environments(staging, production, _key(staging, "admin", "ops"),
                               _key(production, "admin", "ops"),
                               _key(production, "write", "operator", "ops@company.com"),
                               sync_key, _key(production, "read", "dba", DBA), workers,
                               discord, discord.add_webhook())
    finally:
        for process in started:
            process.stop()


def call(server: ApiServer, api_key: str, method: str, path: str,
         body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(method, f"{server.url}{path}", json=body, timeout=10,
                            headers={"Authorization": f"Bearer {api_key}"})


def put(server: ApiServer, api_key: str, key: str, value: Any, **extra: Any) -> dict[str, Any]:
    response = call(server, api_key, "PUT", f"/v1/configs/{key}", {"value": value, **extra})
    assert response.status_code in (200, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def value_in(server: ApiServer, api_key: str, key: str) -> Any:
    """The key's value there, or None when it has none."""
    response = call(server, api_key, "GET", f"/v1/configs/{key}")
    return response.json()["value"] if response.status_code == 200 else None


def sync_cli(envs: Environments, *args: str, with_key: bool = True) -> Any:
    """``apgcfg sync ...`` against staging, with production's key in its environment (as
    staging's workers have it) unless ``with_key`` is false."""
    env = {**envs.staging.env, "PRODUCTION_CONFIG_API_KEY": envs.production_sync_key}
    if not with_key:
        env.pop("PRODUCTION_CONFIG_API_KEY")
    done = subprocess.run([sys.executable, "-m", "apgcfg.cli", "sync", *args, "--json",
                           *envs.staging.options], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def synced_version(envs: Environments, key: str) -> Any:
    """Staging's baseline of ``key`` for production (None before its first sync)."""
    keys = sync_cli(envs, "status")["targets"]["production"]["keys"]
    return keys.get(key)


def configure(envs: Environments, patterns: list[str], *, resolution: str = "manual",
              approval_required: bool = False) -> None:
    """Staging's sync settings, in the guide's shape; production's API key by reference."""
    put(envs.staging, envs.staging_admin, "integrations.multi_env_sync", {
        "environments": {
            "staging": {"endpoint": envs.staging.url, "api_key": "${env:STAGING_CONFIG_API_KEY}",
                        "sync_patterns": ["*"]},
            "production": {"endpoint": envs.production.url,
                           "api_key": "${env:PRODUCTION_CONFIG_API_KEY}",
                           "sync_patterns": patterns, "approval_required": approval_required},
        },
        "sync_interval": 1,
        "conflict_resolution": resolution,
    })


def test_key_set_in_staging__sync_interval_passes__production_serves_it_once(
        envs: Environments) -> None:
    # Given staging syncs push.* to production
    configure(envs, ["push.*"])
    # When a key changes in staging
    put(envs.staging, envs.staging_admin, "push.color", "blue")
    put(envs.staging, envs.staging_admin, "other.color", "red")
    # Then staging's worker pushes it to production's API, as staging's sync
    assert until("push.color in production",
                 lambda: value_in(envs.production, envs.production_admin, "push.color"))
    history = call(envs.production, envs.production_admin, "GET",
                   "/v1/configs/push.color/history").json()
    assert [h["value"] for h in history] == ["blue"]
    assert history[0]["changed_by"] == "apikey:sync-from-staging"
    assert "from staging" in history[0]["reason"]
    # And a key outside the patterns stays home
    assert value_in(envs.production, envs.production_admin, "other.color") is None
    # And running again (the CLI, in-process) sends nothing more
    until("push.color recorded as synced", lambda: synced_version(envs, "push.color"))
    runs = sync_cli(envs, "run", "--target", "production")
    assert runs[0]["status"] == "ok" and runs[0].get("pushed", 0) == 0
    assert runs[0]["in_sync"] == 1
    assert len(call(envs.production, envs.production_admin, "GET",
                    "/v1/configs/push.color/history").json()) == 1


def test_approval_required__key_pushed__pending_in_production_until_approved(
        envs: Environments) -> None:
    # Given production requires approval of approve.database.* by the DBA team
    put(envs.production, envs.production_admin, "integrations.approvals", {
        "required_approvals": {"approve.database.*": {"approvers": [DBA], "min_approvals": 1,
                                                      "timeout": 3600}}})
    # And staging pushes approve.* with approval_required
    configure(envs, ["approve.*"], approval_required=True)
    # When a covered key and an uncovered one change in staging
    put(envs.staging, envs.staging_admin, "approve.database.host", "db-2.internal")
    put(envs.staging, envs.staging_admin, "approve.flag", True)
    # Then production holds a pending change request, not the value
    request = until("a pending request in production", lambda: [
        r for r in call(envs.production, envs.production_admin, "GET",
                        "/v1/approvals?status=pending").json()
        if r["key"] == "approve.database.host"])[0]
    assert value_in(envs.production, envs.production_admin, "approve.database.host") is None
    state = until("pending recorded", lambda: (synced_version(envs, "approve.database.host")
                                               or {}).get("pending"))
    assert state["request_id"] == request["request_id"]
    # And the key without an approval rule there is refused with production's 409, not applied
    refused = until("approve.flag refused", lambda: (synced_version(envs, "approve.flag")
                                                    or {}).get("refused_reason"))
    assert "409" in refused and "no rule" in refused
    assert value_in(envs.production, envs.production_admin, "approve.flag") is None
    # When the DBA approves in production
    decided = call(envs.production, envs.production_dba, "POST",
                   f"/v1/approvals/{request['request_id']}/approve")
    assert decided.status_code == 200, decided.text
    # Then the value is there, and staging records the key as synced
    assert value_in(envs.production, envs.production_admin,
                    "approve.database.host") == "db-2.internal"
    settled = until("approved push settled", lambda: (
        (s := synced_version(envs, "approve.database.host")) and not s["pending"] and s))
    assert settled["target_version"] == 1


def test_manual_resolution__key_changed_on_both_sides__conflict_listed_and_announced(
        envs: Environments) -> None:
    # Given staging routes conflict.* events to Discord, and syncs conflict.* manually
    put(envs.staging, envs.staging_admin, "integrations.discord",
        {"webhook_url": envs.webhook_url})
    put(envs.staging, envs.staging_admin, "integrations.notifications", {"triggers": {
        "sync": {"patterns": ["conflict.*"], "connectors": ["discord"], "urgency": "high"}}})
    configure(envs, ["conflict.*"], resolution="manual")
    put(envs.staging, envs.staging_admin, "conflict.mode", "a")
    until("first push", lambda: value_in(envs.production, envs.production_admin,
                                         "conflict.mode") == "a")
    until("first push recorded", lambda: synced_version(envs, "conflict.mode"))
    # When the key changes in production and then in staging
    put(envs.production, envs.production_writer, "conflict.mode", "b")
    put(envs.staging, envs.staging_admin, "conflict.mode", "c")
    # Then `apgcfg sync conflicts` lists the conflict, and production keeps its value
    conflict = until("a conflict", lambda: [c for c in sync_cli(envs, "conflicts")
                                            if c["key"] == "conflict.mode"])[0]
    assert conflict["target"] == "production"
    assert (conflict["source_value"], conflict["target_value"]) == ("c", "b")
    assert value_in(envs.production, envs.production_admin, "conflict.mode") == "b"
    # And its sync.conflict event is routed like any other: Discord got it
    deliveries = until("sync.conflict delivered", lambda: [
        d for d in call(envs.staging, envs.staging_admin, "GET",
                        f"/v1/events/{conflict['event_id']}/deliveries").json()
        if d["status"] == "delivered"])
    assert [d["connector"] for d in deliveries] == ["discord"]
    assert "conflict.mode" in json.dumps(envs.discord.messages(envs.webhook_url))
    # When it is resolved by taking staging's value
    resolved = sync_cli(envs, "resolve", "conflict.mode", "--take", "source")
    # Then production has it and nothing is in conflict any more
    assert resolved["outcome"] == "pushed"
    assert value_in(envs.production, envs.production_admin, "conflict.mode") == "c"
    assert [c for c in sync_cli(envs, "conflicts") if c["key"] == "conflict.mode"] == []


def test_source_wins_then_target_wins__key_changed_on_both_sides__winner_kept(
        envs: Environments) -> None:
    # Given staging syncs wins.* with source_wins, and the key was synced once
    configure(envs, ["wins.*"], resolution="source_wins")
    put(envs.staging, envs.staging_admin, "wins.level", "s1")
    until("first push", lambda: value_in(envs.production, envs.production_admin,
                                         "wins.level") == "s1")
    until("first push recorded", lambda: synced_version(envs, "wins.level"))
    # When it changes in production, then in staging
    put(envs.production, envs.production_writer, "wins.level", "t1")
    put(envs.staging, envs.staging_admin, "wins.level", "s2")
    # Then staging's value wins there, with no conflict
    until("source won", lambda: value_in(envs.production, envs.production_admin,
                                         "wins.level") == "s2")
    # Given target_wins now
    configure(envs, ["wins.*"], resolution="target_wins")
    until("s2 recorded", lambda: (synced_version(envs, "wins.level") or {}).get(
        "target_version") == 3)
    # When it changes on both sides again
    put(envs.production, envs.production_writer, "wins.level", "t2")
    staging_version = put(envs.staging, envs.staging_admin, "wins.level", "s3")["version"]
    # Then production keeps its value and staging records the key as settled
    until("target kept", lambda: (synced_version(envs, "wins.level") or {}).get(
        "source_version") == staging_version)
    assert value_in(envs.production, envs.production_admin, "wins.level") == "t2"
    # And the next change made only in staging is pushed again
    put(envs.staging, envs.staging_admin, "wins.level", "s4")
    until("pushed after", lambda: value_in(envs.production, envs.production_admin,
                                           "wins.level") == "s4")
    assert [c for c in sync_cli(envs, "conflicts") if c["key"] == "wins.level"] == []


def test_push__sent_again_after_a_lost_answer__applied_once(
        envs: Environments, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a key of staging that production takes, not synced yet
    configure(envs, ["retry.*"])
    monkeypatch.setenv("PRODUCTION_CONFIG_API_KEY", envs.production_sync_key)
    client = connect(redis_url(STAGING_DB))
    ns = Namespace("company", "staging")
    # When the same version is pushed twice (the first answer lost: no baseline recorded)
    with client:
        client.set(ns.key("sync", "lock", "production"), "1", ex=60)  # keep the worker out
        put(envs.staging, envs.staging_admin, "retry.key", "once")
        work = env_sync.job(client, ns, "production")
        local = env_sync.Local('"once"', '"once"', 1)
        outcomes = [env_sync.push(work, "retry.key", local, None) for _ in range(2)]
        client.delete(ns.key("sync", "lock", "production"))
    # Then production applied it once
    assert outcomes == ["pushed", "pushed"]
    history = call(envs.production, envs.production_admin, "GET",
                   "/v1/configs/retry.key/history").json()
    assert [(h["version"], h["value"]) for h in history] == [(1, "once")]


def test_api_key_reference__variable_unset__run_fails_naming_it(envs: Environments) -> None:
    # Given staging's sync settings refer to ${env:PRODUCTION_CONFIG_API_KEY}
    configure(envs, ["push.*"])
    # When a run starts where that variable is unset
    runs = sync_cli(envs, "run", with_key=False)
    # Then it fails, naming the setting and the variable
    assert runs[0]["status"] == "error"
    assert "environments.production.api_key" in runs[0]["error"]
    assert "PRODUCTION_CONFIG_API_KEY" in runs[0]["error"]


def test_put__require_approval_without_rule__409_and_nothing_written(envs: Environments) -> None:
    # When a write asks for approval on a key no rule covers
    response = call(envs.production, envs.production_writer, "PUT", "/v1/configs/plain.key",
                    {"value": 1, "require_approval": True})
    # Then it is refused with 409 naming the key, and nothing is written
    assert response.status_code == 409
    assert "plain.key" in response.json()["detail"]
    assert value_in(envs.production, envs.production_admin, "plain.key") is None


def test_put__same_idempotency_key_twice__applied_once(envs: Environments) -> None:
    first = put(envs.production, envs.production_writer, "idem.key", 1, idempotency_key="a-1")
    second = put(envs.production, envs.production_writer, "idem.key", 2, idempotency_key="a-1")
    assert second["version"] == first["version"] == 1
    assert value_in(envs.production, envs.production_admin, "idem.key") == 1


def test_every_process__after_syncing__never_shows_the_api_key(envs: Environments) -> None:
    # Given the syncs above ran; When staging's status, logs and events are read
    state = sync_cli(envs, "status")
    status = json.dumps(state) + json.dumps(sync_cli(envs, "conflicts"))
    logs = "".join(w.log() for w in envs.workers) + "".join(
        Path(s.log_path).read_text(errors="replace") for s in (envs.staging, envs.production))
    shown = call(envs.staging, envs.staging_admin, "GET",
                 "/v1/configs/integrations.multi_env_sync").json()
    # Then production's key shows nowhere (its reference is shown masked)
    assert envs.production_sync_key not in status + logs + json.dumps(shown)
    assert shown["value"]["environments"]["production"]["api_key"] == "***"
    assert "push.color" in state["targets"]["production"]["keys"]
