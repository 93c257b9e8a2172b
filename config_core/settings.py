"""Settings read from the environment, each with its default."""

from __future__ import annotations

import os

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
"""Redis used when ``CONFIG_REDIS_URL`` is unset."""

DEFAULT_ENVIRONMENT = "development"
"""Environment name used when ``CONFIG_ENVIRONMENT`` is unset."""

DEFAULT_TENANT = "default"
"""Tenant name used when ``CONFIG_TENANT`` is unset."""

HISTORY_MAX = 1000
"""History entries kept per key (older ones are trimmed)."""

DEFAULT_MAX_BACKLOG = 100_000
"""Undelivered events an outbox may hold before writes are refused (integrations.max_backlog)."""

EVENT_TTL_S = 7 * 24 * 3600
"""How long dispatched events and their delivery ledger are kept."""


def redis_url() -> str:
    """``CONFIG_REDIS_URL`` or the default."""
    return os.environ.get("CONFIG_REDIS_URL") or DEFAULT_REDIS_URL


def environment() -> str:
    return os.environ.get("CONFIG_ENVIRONMENT") or DEFAULT_ENVIRONMENT


def tenant() -> str:
    return os.environ.get("CONFIG_TENANT") or DEFAULT_TENANT


def eager() -> bool:
    """True when ``CELERY_TASK_ALWAYS_EAGER`` asks for inline delivery (tests, scripts)."""
    return os.environ.get("CELERY_TASK_ALWAYS_EAGER", "").lower() in ("1", "true", "yes", "on")


def client_url(url: str) -> str:
    """A URL redis-py understands: kombu's ``redis+socket://`` becomes ``unix://``."""
    if url.startswith("redis+socket://"):
        return "unix://" + url[len("redis+socket://"):]
    return url
