"""Okta through real processes: ``apgcfg identity sync okta``, access control, a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import AccessDenied, ConfigService
from config_core.access import RANK
from config_core.state.directory import roles_key
from tests.fakes.discord import FakeDiscord
from tests.fakes.okta import FakeOkta

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = {"Platform Team": "admin", "Development Team": "write", "QA Team": "read"}
SYNC_FAILED_TITLE = "🔔 Identity Sync Failed"
"""How the chat connectors title an ``identity.sync_failed`` event."""


@pytest.fixture
def okta_fake() -> Iterator[FakeOkta]:
    """A started FakeOkta (700 seeded users), stopped after the test."""
    with FakeOkta() as fake:
        yield fake


@pytest.fixture
def raw(integration_redis: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(integration_redis, decode_responses=True)
    yield client
    client.close()


def okta_config(fake: FakeOkta) -> dict[str, Any]:
    """The guide's config, pointed at the fake."""
    return {"domain": "yourcompany.okta.com", "api_token": fake.token, "sync_groups": True,
            "group_mappings": dict(MAPPINGS), "sync_interval": 3600,
            "user_attributes": ["email", "firstName", "lastName", "department"],
            "base_url": fake.base_url}


def expected_roles(fake: FakeOkta) -> dict[str, str]:
    """Email → role for every ACTIVE member of a mapped group (the strongest group wins)."""
    found: dict[str, str] = {}
    for group, role in MAPPINGS.items():
        for user in fake.members(group):
            email = user["profile"]["email"]
            if user["status"] == "ACTIVE" and RANK[role] > RANK.get(found.get(email, ""), 0):
                found[email] = role
    return found


def apgcfg(service: ConfigService, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``apgcfg ARGS`` as a subprocess against the service's namespace."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    command = [sys.executable, "-m", "apgcfg.cli", *args, "--json",
               "--redis-url", service.redis_url,
               "--tenant", service.tenant, "--environment", service.environment]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=90, check=False)


def sync_ok(service: ConfigService) -> dict[str, Any]:
    done = apgcfg(service, "identity", "sync", "okta")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)["okta"]
    return result


async def wait_until(check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        found = await found if asyncio.iscoroutine(found) else found
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout_s}s")


def one_of(fake: FakeOkta, role: str) -> str:
    """An ACTIVE user whose strongest mapped role is ``role``."""
    return next(email for email, found in sorted(expected_roles(fake).items()) if found == role)


async def test_cli_sync__guide_config__hundreds_of_users_over_pages_get_mapped_roles(
        service: ConfigService, okta_fake: FakeOkta, raw: redis.Redis) -> None:
    # Given Okta configured as the guide shows, against 700 seeded users
    await service.set_config("integrations.okta", okta_config(okta_fake))
    expected = expected_roles(okta_fake)
    # When `apgcfg identity sync okta` runs
    result = sync_ok(service)
    # Then every mapped member is in the directory with the role its groups give
    assert result["status"] == "ok" and int(result["users"]) > 400
    assert raw.hgetall(roles_key(service.namespace)) == expected
    for role in ("admin", "write", "read"):
        assert await service.get_role(one_of(okta_fake, role)) == role
    inactive = next(u for u in okta_fake.members("Platform Team") if u["status"] != "ACTIVE")
    assert await service.get_role(inactive["profile"]["email"]) is None
    # And the fake was paged through (next links followed)
    assert len(okta_fake.page_requests()) >= 2


@pytest.mark.parametrize("status", ["SUSPENDED", "DEPROVISIONED"])
async def test_access__writer_deactivated_in_okta__write_refused_after_next_sync(
        service: ConfigService, okta_fake: FakeOkta, status: str) -> None:
    # Given a synced directory, enforcement on, and a writer who may write
    await service.set_config("integrations.okta", okta_config(okta_fake))
    sync_ok(service)
    admin, writer = one_of(okta_fake, "admin"), one_of(okta_fake, "write")
    await service.set_config("integrations.access", {"enforce": True}, changed_by=admin)
    await service.set_config("app.feature.limit", 1, changed_by=writer)
    history = await service.history("app.feature.limit")
    # When Okta suspends / deprovisions the writer and the next sync runs
    okta_fake.set_status(writer, status)
    sync_ok(service)
    # Then the writer has no role and their write is refused, with nothing written
    assert await service.get_role(writer) is None
    with pytest.raises(AccessDenied):
        await service.set_config("app.feature.limit", 2, changed_by=writer)
    assert await service.get_config("app.feature.limit") == 1
    assert await service.history("app.feature.limit") == history


@pytest.mark.parametrize("status", [500, 401])
async def test_cli_sync__page_two_fails__exit_nonzero_old_directory_kept_failure_reported(
        service: ConfigService, okta_fake: FakeOkta, discord_fake: FakeDiscord,
        raw: redis.Redis, status: int) -> None:
    # Given a synced directory, and Discord configured to hear about events
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await service.set_config("integrations.okta", okta_config(okta_fake))
    sync_ok(service)
    before = raw.hgetall(roles_key(service.namespace))
    admin = one_of(okta_fake, "admin")
    okta_fake.set_status(admin, "SUSPENDED")
    # When the next sync's second page fails
    okta_fake.fail_next_page(status)
    failed = apgcfg(service, "identity", "sync", "okta")
    # Then it exits non-zero, and the previous directory stays in force
    assert failed.returncode != 0 and "previous directory kept" in failed.stderr
    assert okta_fake.token not in failed.stderr
    assert raw.hgetall(roles_key(service.namespace)) == before
    assert await service.get_role(admin) == "admin"
    # And the failure is visible in the status and as a delivered identity.sync_failed event
    shown = apgcfg(service, "identity", "status", "okta")
    meta = json.loads(shown.stdout)["okta"]
    assert meta["status"] == "error" and str(status) in meta["error"]
    titles = await wait_until(lambda: [t for t in _titles(discord_fake) if t == SYNC_FAILED_TITLE])
    assert titles == [SYNC_FAILED_TITLE]


async def test_worker_task__identity_sync_sent__directory_filled(
        service: ConfigService, okta_fake: FakeOkta, raw: redis.Redis,
        integration_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Okta configured, and nothing synced yet
    await service.set_config("integrations.okta", okta_config(okta_fake))
    admin = one_of(okta_fake, "admin")
    assert await service.get_role(admin) is None
    # When the task is sent to the real worker
    from workers import app

    monkeypatch.setitem(app.conf, "task_always_eager", False)  # a unit test may have set it
    with app.connection_for_write(integration_redis) as connection:
        app.send_task("workers.identity_sync", args=[service.namespace.name, "okta"],
                      connection=connection)
    # Then the worker fills the directory
    await wait_until(lambda: raw.hget(roles_key(service.namespace), admin) == "admin")
    assert raw.hgetall(roles_key(service.namespace)) == expected_roles(okta_fake)
    assert len(okta_fake.page_requests()) >= 2


def _titles(fake: FakeDiscord) -> list[str]:
    return [embed.get("title", "") for message in fake.messages()
            for embed in message.get("embeds", [])]
