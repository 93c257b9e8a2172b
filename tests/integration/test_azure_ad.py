"""Azure AD through real processes: the ``apgcfg`` CLI, a real worker, the Graph fake."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import AccessDenied, ConfigService
from tests.fakes.azure_ad import PEOPLE, FakeAzureAD
from tests.fakes.discord import FakeDiscord
from tests.integration.conftest import all_in, wait_for_deliveries

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

ROLES = {"alice": "admin", "bob": "write", "carol": "read", "dave": "admin", "erin": None,
         "frank": "write", "gina": None, "hank": "read", "jack": "read"}
"""The role each named user of the seeded tenant should get under the fake's mappings."""


@pytest.fixture
def azure_fake() -> Iterator[FakeAzureAD]:
    """A started Graph fake: 600 seeded users, at most 100 per page."""
    with FakeAzureAD(max_page_size=100) as fake:
        yield fake


def apgcfg(redis_url: str, tenant: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``apgcfg ARGS`` as a separate process against the test namespace."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    command = [sys.executable, "-m", "apgcfg.cli", *args, "--json", "--redis-url", redis_url,
               "--tenant", tenant, "--environment", "production"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


async def roles_of(service: ConfigService) -> dict[str, str | None]:
    return {name: await service.get_role(PEOPLE[name]) for name in ROLES}


async def wait_for_event(redis_url: str, service: ConfigService, event_type: str,
                         timeout_s: float = 30.0) -> dict[str, Any]:
    """The first dispatched event of ``event_type`` in the service's namespace."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for key in client.scan_iter(f"{service.namespace.prefix}event:*"):
                event = json.loads(client.get(key) or "{}")
                if event.get("type") == event_type:
                    return event
            await asyncio.sleep(0.1)
    finally:
        client.close()
    raise AssertionError(f"no {event_type} event within {timeout_s}s")


async def test_cli_sync__hundreds_of_users_over_several_pages__roles_as_mapped(
        service: ConfigService, azure_fake: FakeAzureAD, integration_redis: str,
        tenant: str) -> None:
    # Given azure_ad configured as the guide shows, with group mappings, against the fake
    await service.set_config("integrations.azure_ad", azure_fake.config())
    # When `apgcfg identity sync azure_ad` runs
    done = apgcfg(integration_redis, tenant, "identity", "sync", "azure_ad")
    # Then it exits 0 having synced hundreds of users over several pages
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)["azure_ad"]
    assert meta["status"] == "ok" and meta["users"] > 400
    next_pages = [r for r in azure_fake.graph_requests("transitiveMembers")
                  if "$skiptoken" in r.query]
    assert len(next_pages) >= 3
    assert len(azure_fake.token_requests) == 1
    # And every named user has the role the mappings give (nested groups included)
    assert await roles_of(service) == ROLES


async def test_sync__user_disabled_in_entra__loses_write_access_at_next_sync(
        service: ConfigService, azure_fake: FakeAzureAD, integration_redis: str,
        tenant: str) -> None:
    # Given a synced directory and access control on
    await service.set_config("integrations.azure_ad", azure_fake.config())
    assert apgcfg(integration_redis, tenant, "identity", "sync", "azure_ad").returncode == 0
    await service.set_config("integrations.access", {"enforce": True},
                             changed_by=PEOPLE["alice"])
    await service.set_config("app.feature_flag", "on", changed_by=PEOPLE["bob"])
    # When bob's account is disabled in Entra ID and the next sync runs
    azure_fake.set_enabled(PEOPLE["bob"], False)
    assert apgcfg(integration_redis, tenant, "identity", "sync", "azure_ad").returncode == 0
    # Then bob has no role, his write is refused, and nothing was written
    assert await service.get_role(PEOPLE["bob"]) is None
    with pytest.raises(AccessDenied):
        await service.set_config("app.feature_flag", "off", changed_by=PEOPLE["bob"])
    assert await service.get_config("app.feature_flag") == "on"
    assert len(await service.history("app.feature_flag")) == 1


async def test_sync__page_two_fails__non_zero_exit_previous_directory_kept_and_reported(
        service: ConfigService, azure_fake: FakeAzureAD, discord_fake: FakeDiscord,
        integration_redis: str, tenant: str) -> None:
    # Given a good sync, and Discord configured so that events are routed somewhere
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await service.set_config("integrations.azure_ad", azure_fake.config())
    assert apgcfg(integration_redis, tenant, "identity", "sync", "azure_ad").returncode == 0
    # When bob is disabled but the next sync fails on page 2 with a 500
    azure_fake.set_enabled(PEOPLE["bob"], False)
    azure_fake.fail_page(500, page=2)
    failed = apgcfg(integration_redis, tenant, "identity", "sync", "azure_ad")
    # Then the CLI exits non-zero and the previous directory still stands (bob still write)
    assert failed.returncode != 0
    assert "previous directory kept" in failed.stderr and "500" in failed.stderr
    assert await roles_of(service) == ROLES
    # And the failure is recorded: status error, and an identity.sync_failed event delivered
    shown = apgcfg(integration_redis, tenant, "identity", "status", "azure_ad")
    status = json.loads(shown.stdout)["azure_ad"]
    assert status["status"] == "error" and "InternalServerError" in status["error"]
    assert azure_fake.client_secret not in failed.stderr + shown.stdout
    event = await wait_for_event(integration_redis, service, "identity.sync_failed")
    assert event["metadata"]["provider"] == "azure_ad"
    records = await wait_for_deliveries(service, event["event_id"], all_in("delivered"))
    assert [r["connector"] for r in records] == ["discord"]


async def test_worker_task__identity_sync_sent__directory_filled(
        service: ConfigService, azure_fake: FakeAzureAD, integration_redis: str) -> None:
    # Given azure_ad configured, and an empty directory
    from workers import app

    await service.set_config("integrations.azure_ad", azure_fake.config())
    assert await service.get_role(PEOPLE["alice"]) is None
    # When the task is sent to the real worker
    with app.connection_for_write(integration_redis) as connection:
        app.send_task("workers.identity_sync", args=[service.namespace.name, "azure_ad"],
                      connection=connection, queue="medium", ignore_result=True)
    # Then the worker syncs: the roles appear
    deadline = time.monotonic() + 30
    while await service.get_role(PEOPLE["alice"]) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await roles_of(service) == ROLES
    assert len(azure_fake.token_requests) == 1
    assert any("$skiptoken" in r.query for r in azure_fake.graph_requests())
