"""Fixtures shared by every layer: a real Redis (required, never skipped) and a fresh namespace."""

from __future__ import annotations

import atexit
import os
import uuid

import pytest
import redis

os.environ.setdefault("APGCFG_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
"""The vendor fakes listen on loopback, which vendor calls may reach only when allowed; set
before anything reads it, so worker subprocesses inherit it. Tests of the default clear it."""

def _own_redis_for_this_xdist_process() -> None:
    """Under ``pytest -n``, every process but the first gets a Redis server of its own, so
    tests that flush their database never flush another process's (worker subprocesses
    inherit the address through the environment)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if name == "gw0" or os.environ.get("APGCFG_TEST_REDIS_OWNER") == name:
        return
    from tests.integration.spare_redis import SpareRedis

    server = SpareRedis().start()
    atexit.register(server.stop)
    os.environ["APGCFG_TEST_REDIS"] = f"redis://127.0.0.1:{server.port}"
    os.environ["APGCFG_TEST_REDIS_OWNER"] = name


_own_redis_for_this_xdist_process()

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
