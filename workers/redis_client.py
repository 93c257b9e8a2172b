"""One synchronous Redis client per worker process (rebuilt after a fork), with retries."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from config_core import settings

RETRIES = 5
"""Times a command is sent again after a connection error or timeout (about 3 s in all):
long enough for a Redis restart or a failover to pass, short enough for a task to fail and be
reconciled later."""

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
    """A new client for ``url`` (``redis+socket://`` accepted) that retries lost connections."""
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES,
                  supported_errors=(RedisConnectionError, RedisTimeoutError))
    return redis.Redis.from_url(settings.client_url(url), decode_responses=True,
                                socket_timeout=30, socket_connect_timeout=5,
                                health_check_interval=25, retry=retry,
                                retry_on_error=[RedisConnectionError, RedisTimeoutError])
