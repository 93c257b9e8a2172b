"""Identity sync: fetch a provider's whole directory, then store it at once (or keep the old).

Runs as the task ``workers.identity_sync`` (scheduled by ``workers.identity_tick`` on celery
beat, every ``sync_interval`` seconds per provider) and inline from ``apgcfg identity sync``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from config_core.errors import ApgConfigError, ConfigError
from config_core.events import Change
from config_core.state import directory, events, values
from config_core.state.keys import Namespace
from config_core.state.values import event_only, write_sync
from connectors import registry
from connectors.base import BaseConnector, call
from connectors.identity import DEFAULT_SYNC_INTERVAL_S, IdentityConnector

log = logging.getLogger(__name__)

SYNC_FAILED = "identity.sync_failed"
"""Event emitted when a sync fails (the previous directory stays in force)."""

class SyncFailed(ApgConfigError):
    """A provider's directory could not be fetched or stored; the previous one stays."""


def providers(client: redis.Redis, ns: Namespace) -> list[str]:
    """Identity providers configured in ``ns``."""
    names = [name for name, path in registry.BUILTIN.items()
             if _is_identity(path) and values.has_value(client, ns, f"integrations.{name}")]
    return sorted(names)


def sync(client: redis.Redis, ns: Namespace, provider: str) -> dict[str, Any]:
    """Sync one provider now; ``SyncFailed`` (after recording it) when it fails."""
    connector = _build(client, ns, provider)
    started = time.monotonic()
    try:
        users = call(connector.sync_data)["users"]
        return directory.replace(client, ns, provider, users, time.monotonic() - started)
    except (ApgConfigError, KeyError, TypeError) as exc:
        error = connector.redact(f"{type(exc).__name__}: {exc}")
        directory.record_failure(client, ns, provider, error)
        _emit_failure(client, ns, provider, error)
        raise SyncFailed(f"sync of {provider} failed, previous directory kept: {error}") from None


def due(client: redis.Redis, ns: Namespace, provider: str) -> bool:
    """Whether ``provider``'s last sync is older than its ``sync_interval``."""
    stored = values.read_json(client, ns, f"integrations.{provider}")
    interval = (stored or {}).get("sync_interval")
    last = directory.status(client, ns, provider).get("last_sync")
    return last is None or time.time() - float(last) >= (interval or DEFAULT_SYNC_INTERVAL_S)


def claim(client: redis.Redis, ns: Namespace, provider: str) -> bool:
    """Take the right to sync ``provider`` now (one sync at a time)."""
    return directory.lock(client, ns, provider)


def release(client: redis.Redis, ns: Namespace, provider: str) -> None:
    directory.unlock(client, ns, provider)


def due_syncs(client: redis.Redis) -> list[tuple[Namespace, str]]:
    """Every (namespace, provider) whose sync is due and not already running."""
    found = []
    for ns in events.namespaces(client):
        for provider in providers(client, ns):
            if due(client, ns, provider) and claim(client, ns, provider):
                found.append((ns, provider))
    return found


def _build(client: redis.Redis, ns: Namespace, provider: str) -> BaseConnector:
    path = registry.BUILTIN.get(provider)
    stored = values.read_json(client, ns, f"integrations.{provider}")
    if path is None or not _is_identity(path):
        raise ConfigError(f"{provider!r} is not an identity provider "
                          f"(known: {[n for n, p in registry.BUILTIN.items() if _is_identity(p)]})")
    if stored is None:
        raise ConfigError(f"integrations.{provider} is not configured")
    return registry.load(path).from_stored(provider, stored)


def _is_identity(path: str) -> bool:
    try:
        return issubclass(registry.load(path), IdentityConnector)
    except ConfigError:
        return False


def _emit_failure(client: redis.Redis, ns: Namespace, provider: str, error: str) -> None:
    change = Change(SYNC_FAILED, ns.tenant, ns.environment, f"integrations.{provider}", None,
                    f"identity:{provider}", None, {"provider": provider, "error": error})
    try:
        write_sync(client, ns, event_only(change, "null"))
    except (ApgConfigError, redis.RedisError) as exc:
        log.warning("could not record %s for %s: %s", SYNC_FAILED, provider, exc)
