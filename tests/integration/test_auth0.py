"""Auth0 identity sync through real processes: the CLI, the session worker, Redis, the fake."""

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
from config_core.state.directory import user as directory_user
from tests.fakes.auth0 import FakeAuth0
from tests.fakes.discord import FakeDiscord

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = {"admin": "admin", "developer": "write", "viewer": "read"}
CLI_TIMEOUT_S = 60


@pytest.fixture
def auth0_fake() -> Iterator[FakeAuth0]:
    """A started FakeAuth0: 600 users in five roles (three mapped below)."""
    with FakeAuth0() as fake:
        yield fake


async def configure(service: ConfigService, fake: FakeAuth0) -> None:
    """Store the guide's Auth0 config, pointed at the fake."""
    await service.set_config("integrations.auth0", {
        "domain": "apg-test.eu.auth0.com", "client_id": fake.client_id,
        "client_secret": fake.client_secret, "connection": "Username-Password-Authentication",
        "role_mappings": dict(MAPPINGS), "base_url": fake.base_url})


def apgcfg(service: ConfigService, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m apgcfg.cli ARGS`` against the service's namespace."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "APGCFG_HTTP_TIMEOUT_S": "2,3"}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    command = [sys.executable, "-m", "apgcfg.cli", *args, "--json",
               "--redis-url", service.redis_url, "--tenant", service.namespace.tenant,
               "--environment", service.namespace.environment]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, check=False)


def sync(service: ConfigService) -> subprocess.CompletedProcess[str]:
    return apgcfg(service, "identity", "sync", "auth0")


def writers(fake: FakeAuth0, count: int) -> list[str]:
    """Emails a correct sync gives exactly ``write``."""
    expected = fake.expected_roles(MAPPINGS, "Username-Password-Authentication")
    return sorted(email for email, role in expected.items() if role == "write")[:count]


async def roles_of(service: ConfigService, emails: list[str]) -> dict[str, str | None]:
    return {email: await service.get_role(email) for email in emails}


async def test_cli_sync__hundreds_of_users_over_pages__roles_readable_as_mapped(
        service: ConfigService, auth0_fake: FakeAuth0) -> None:
    # Given the guide's Auth0 config against a tenant of 600 users
    await configure(service, auth0_fake)
    expected = auth0_fake.expected_roles(MAPPINGS, "Username-Password-Authentication")
    # When `apgcfg identity sync auth0` runs as its own process
    done = sync(service)
    # Then it exits 0, and every user has the mapped role
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["auth0"]["users"] == len(expected)
    assert len(expected) > 300
    for role in ("admin", "write", "read"):
        sample = [email for email, mapped in expected.items() if mapped == role][:5]
        assert sample and await roles_of(service, sample) == dict.fromkeys(sample, role)
    blocked = [email for email, mapped in expected.items() if mapped is None][:3]
    assert blocked and await roles_of(service, blocked) == dict.fromkeys(blocked)
    client = redis.Redis.from_url(service.redis_url, decode_responses=True)
    try:
        stored = directory_user(client, service.namespace, "auth0", blocked[0])
    finally:
        client.close()
    assert stored is not None and stored["active"] is False and stored["role"] is None
    # And the fake was paged: several member pages and several user searches, one token
    developer = auth0_fake.requests_to(f"/api/v2/roles/{auth0_fake.role_id('developer')}/users")
    assert len(developer) >= 3 and len(auth0_fake.requests_to("/api/v2/users")) > 1
    assert auth0_fake.token_requests == 1


async def test_blocked_user__next_sync__loses_write_access_nothing_written(
        service: ConfigService, auth0_fake: FakeAuth0) -> None:
    # Given a synced developer (write) and access control enforced
    await configure(service, auth0_fake)
    assert sync(service).returncode == 0
    developer = writers(auth0_fake, 1)[0]
    await service.set_config("integrations.access", {"enforce": True})
    await service.set_config("app.checkout.retries", 3, changed_by=developer)
    history_before = await service.history("app.checkout.retries")
    # When Auth0 blocks the user and the next sync runs
    auth0_fake.set_blocked(developer)
    done = sync(service)
    assert done.returncode == 0, done.stderr
    # Then the user's write is refused and nothing is written
    assert await service.get_role(developer) is None
    with pytest.raises(AccessDenied):
        await service.set_config("app.checkout.retries", 5, changed_by=developer)
    assert await service.get_config("app.checkout.retries") == 3
    assert len(await service.history("app.checkout.retries")) == len(history_before)


async def test_sync_failing_on_page_two__exits_non_zero__previous_directory_kept_and_reported(
        service: ConfigService, auth0_fake: FakeAuth0, discord_fake: FakeDiscord) -> None:
    # Given a good sync, Discord configured to hear about events, and a user then blocked
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    await configure(service, auth0_fake)
    assert sync(service).returncode == 0
    sample = writers(auth0_fake, 6)
    before = await roles_of(service, sample)
    assert set(before.values()) == {"write"}
    auth0_fake.set_blocked(sample[0])
    # When the next sync fails on page 2 of the developer role's members
    developer_path = f"/api/v2/roles/{auth0_fake.role_id('developer')}/users"
    auth0_fake.fail_request(2, 500, developer_path)
    done = sync(service)
    # Then the CLI exits non-zero and says why, without the secret
    assert done.returncode != 0
    assert "auth0" in done.stderr and "500" in done.stderr
    assert auth0_fake.client_secret not in done.stderr
    # And the previous directory stays: even the blocked user keeps write until a good sync
    assert await roles_of(service, sample) == before
    status = json.loads(apgcfg(service, "identity", "status", "auth0").stdout)["auth0"]
    assert status["status"] == "error" and "500" in status["error"]
    # And an identity.sync_failed event was routed and delivered
    messages = await asyncio.to_thread(_wait_for_title, discord_fake, "Identity Sync Failed")
    assert any("integrations.auth0" in json.dumps(m) for m in messages)


def _wait_for_title(fake: FakeDiscord, words: str, timeout_s: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [m for m in fake.messages() if words in m["embeds"][0]["title"]]
        if found:
            return found
        time.sleep(0.1)
    titles = [m["embeds"][0]["title"] for m in fake.messages()]
    raise AssertionError(f"no Discord message titled {words!r} in {timeout_s}s: {titles}")


async def test_worker_task__identity_sync_sent__directory_filled(
        service: ConfigService, auth0_fake: FakeAuth0) -> None:
    # Given the Auth0 config, and nothing synced yet
    await configure(service, auth0_fake)
    admin = next(e for e, r in auth0_fake.expected_roles(
        MAPPINGS, "Username-Password-Authentication").items() if r == "admin")
    assert await service.get_role(admin) is None
    # When the task workers.identity_sync is sent to the real worker
    from workers import app

    with app.connection_for_write(service.redis_url) as connection:
        app.send_task("workers.identity_sync", args=[service.namespace.name, "auth0"],
                      connection=connection, ignore_result=True, queue="medium")
    # Then the worker fills the directory
    deadline = time.monotonic() + 30
    while await service.get_role(admin) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await service.get_role(admin) == "admin"
    assert auth0_fake.token_requests == 1 and len(auth0_fake.requests_to("/api/v2/users")) > 1
