"""Fixtures shared by every layer: a real Redis (required, never skipped) and a fresh namespace."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

os.environ.setdefault("APGCFG_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
"""The vendor fakes listen on loopback, which vendor calls may reach only when allowed; set
before anything reads it, so worker subprocesses inherit it. Tests of the default clear it."""

REDIS_BASE = os.environ.get("APGCFG_TEST_REDIS", "redis://127.0.0.1:6379")
"""Test Redis server; unit tests use db 13, integration tests db 15."""

UNIT_DB = 13
INTEGRATION_DB = 15


def redis_url(db: int) -> str:
    return f"{REDIS_BASE}/{db}"


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The test Redis server URL base; fails the run loudly when nothing answers."""
    try:
        redis.Redis.from_url(redis_url(UNIT_DB), socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"tests need a Redis server at {REDIS_BASE} ({exc}); .ci/run starts one")
    return REDIS_BASE


@pytest.fixture
def tenant() -> str:
    """A tenant name no other test uses, so tests never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"
