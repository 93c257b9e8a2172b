"""Access control: roles from the identity directory decide who may write which key."""

from __future__ import annotations

import json

import pytest
import redis

from config_core import AccessDenied, ConfigService
from config_core.access import may_write, required_role
from config_core.state import directory
from config_core.state.events import outbox_key


def sync(raw: redis.Redis, service: ConfigService, provider: str, users: list[dict]) -> None:
    directory.replace(raw, service.namespace, provider, users, 0.1)


def user(email: str, role: str | None, active: bool = True) -> dict:
    return {"email": email, "active": active, "role": role, "groups": [], "attributes": {}}


@pytest.mark.parametrize(("role", "key", "allowed"), [
    ("admin", "integrations.discord", True), ("write", "integrations.discord", False),
    ("write", "app.x", True), ("read", "app.x", False), (None, "app.x", False),
    ("admin", "app.x", True),
])
def test_may_write__role_and_key__read_lt_write_lt_admin(role: str | None, key: str,
                                                         allowed: bool) -> None:
    assert may_write(role, key) is allowed
    assert required_role("integrations.x") == "admin" and required_role("app.x") == "write"


async def test_get_role__several_providers__highest_active_role(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    sync(raw_redis, service, "okta", [user("Ann@Company.com", "write"), user("bob@x.com", "read"),
                                      user("cy@x.com", "admin", active=False)])
    sync(raw_redis, service, "auth0", [user("ann@company.com", "admin"), user("dee@x.com", None)])
    assert await service.get_role("ann@company.com") == "admin"
    assert await service.get_role("ANN@company.com") == "admin"
    assert await service.get_role("bob@x.com") == "read"
    assert await service.get_role("cy@x.com") is None
    assert await service.get_role("dee@x.com") is None
    assert await service.get_role("nobody@x.com") is None
    # When okta's directory is replaced, its users' roles follow at once
    sync(raw_redis, service, "okta", [user("bob@x.com", "write")])
    assert await service.get_role("bob@x.com") == "write"
    assert await service.get_role("ann@company.com") == "admin"  # still via auth0


async def test_enforce__unauthorized_write__access_denied_nothing_written_violation_emitted(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given enforcement on and a reader
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    sync(raw_redis, service, "okta", [user("admin@x.com", "admin"), user("dev@x.com", "write"),
                                      user("qa@x.com", "read")])
    await service.set_config("integrations.access", {"enforce": True}, changed_by="admin@x.com")
    await service.set_config("app.x", 1, changed_by="dev@x.com")
    before = raw_redis.xlen(outbox_key(service.namespace))
    # When the reader writes / Then refused with who, what and why; value unchanged
    with pytest.raises(AccessDenied, match=r"'qa@x.com' may not write 'app.x'.*write role"):
        await service.set_config("app.x", 2, changed_by="qa@x.com")
    assert await service.get_config("app.x") == 1
    assert len(await service.history("app.x")) == 1
    # And a security.violation event was recorded
    event = json.loads(raw_redis.xrange(outbox_key(service.namespace))[-1][1]["e"])
    assert raw_redis.xlen(outbox_key(service.namespace)) == before + 1
    assert (event["type"], event["key"], event["changed_by"]) == (
        "security.violation", "app.x", "qa@x.com")
    assert event["metadata"]["required_role"] == "write"


async def test_enforce__integrations_keys__need_admin(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    sync(raw_redis, service, "okta", [user("admin@x.com", "admin"), user("dev@x.com", "write")])
    await service.set_config("integrations.access", {"enforce": True}, changed_by="admin@x.com")
    with pytest.raises(AccessDenied, match="admin role"):
        await service.set_config("integrations.batching", {"max_retries": 1},
                                 changed_by="dev@x.com")
    with pytest.raises(AccessDenied):
        await service.set_config("integrations.access", {"enforce": False}, changed_by="dev@x.com")
    with pytest.raises(AccessDenied):
        await service.delete_config("integrations.access", changed_by="dev@x.com")
    with pytest.raises(AccessDenied, match="anonymous"):
        await service.set_config("app.y", 1)
    with pytest.raises(AccessDenied):
        await service.set_config_local_only("app.y", 1, changed_by="nobody@x.com")
    await service.set_config("integrations.access", {"enforce": False}, changed_by="admin@x.com")
    await service.set_config("app.y", 1)  # enforcement off again: anyone


async def test_enforce__off__no_role_needed(service: ConfigService) -> None:
    result = await service.set_config("app.x", 1, changed_by="stranger@x.com")
    assert result.status == "applied"
