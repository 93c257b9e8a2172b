"""One synchronous Redis client per worker process (rebuilt after a fork)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from config_core import settings

_client: redis.Redis | None = None
_pid: int | None = None
_local = threading.local()


def client() -> redis.Redis:
    """This process's client for ``CONFIG_REDIS_URL`` (or the thread's override)."""
    global _client, _pid
    override = getattr(_local, "client", None)
    if override is not None:
        return override
    if _client is None or _pid != os.getpid():
        _client = connect(settings.redis_url())
        _pid = os.getpid()
    return _client


@contextmanager
def using(redis_client: redis.Redis) -> Iterator[None]:
    """Make ``client()`` return ``redis_client`` in this thread (eager delivery in a writer)."""
    previous = getattr(_local, "client", None)
    _local.client = redis_client
    try:
        yield
    finally:
        _local.client = previous


def connect(url: str) -> redis.Redis:
    """A new client for ``url`` (``redis+socket://`` accepted)."""
    return redis.Redis.from_url(settings.client_url(url), decode_responses=True,
                                socket_timeout=30, socket_connect_timeout=5,
                                health_check_interval=25)
