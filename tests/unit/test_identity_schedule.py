"""Identity syncs are due every sync_interval seconds (celery beat's tick starts them)."""

from __future__ import annotations

import time

import pytest
import redis

from config_core import ConfigService
from config_core.state import directory
from workers import identity

OKTA = {"domain": "yourcompany.okta.com", "api_token": "00abcdefghijklmnopqrstuvwxyz0123456789AB",
        "group_mappings": {"Platform Team": "admin"}, "sync_interval": 600}


def due_here(raw: redis.Redis, service: ConfigService) -> list[str]:
    return [p for ns, p in identity.due_syncs(raw) if ns == service.namespace]


async def test_tick__never_synced__due_once_then_claimed(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    await service.set_config("integrations.okta", OKTA)
    assert identity.providers(raw_redis, service.namespace) == ["okta"]
    assert due_here(raw_redis, service) == ["okta"]
    assert due_here(raw_redis, service) == []  # claimed: not started twice
    identity.release(raw_redis, service.namespace, "okta")


async def test_tick__synced_recently__not_due_until_interval_passes(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    await service.set_config("integrations.okta", OKTA)
    directory.replace(raw_redis, service.namespace, "okta", [], 0.1)
    assert due_here(raw_redis, service) == []
    later = time.time() + 601
    monkeypatch.setattr(identity.time, "time", lambda: later)
    assert due_here(raw_redis, service) == ["okta"]
    identity.release(raw_redis, service.namespace, "okta")


async def test_tick__no_identity_provider__nothing_due(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    await service.set_config("app.x", 1)
    assert due_here(raw_redis, service) == []
