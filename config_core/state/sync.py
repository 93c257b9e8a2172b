"""Multi-environment sync state in Redis: what each target last got, conflicts, runs, locks.

Keys (all under the source namespace ``apgcfg:{tenant}:{env}:``):

- ``sync:state:{target}``: hash key → ``Baseline`` JSON (the versions here and there at the
  last sync of that key, a push waiting for approval there, a version the target refused);
- ``sync:conflicts``: hash ``{target}:{key}`` → the conflict (``manual`` resolution);
- ``sync:runs``: hash target → the last run's summary;
- ``sync:due:{target}``: set for ``sync_interval`` seconds when a run is published (the relay's
  sweep publishes the next one once it is gone);
- ``sync:lock:{target}``: held while a run goes (one run per target at a time).
"""

from __future__ import annotations

import json
from typing import Any

import redis

from config_core.state.keys import Namespace
from config_core.sync import Baseline

LOCK_S = 300
"""A run holds its target this long at most (a worker that died gives it back then)."""


def state_key(ns: Namespace, target: str) -> str:
    return ns.key("sync", "state", target)


def conflicts_key(ns: Namespace) -> str:
    return ns.key("sync", "conflicts")


def runs_key(ns: Namespace) -> str:
    return ns.key("sync", "runs")


def baselines(client: redis.Redis, ns: Namespace, target: str) -> dict[str, Baseline]:
    """Every key's baseline for ``target``."""
    stored: Any = client.hgetall(state_key(ns, target))
    return {key: base for key, text in stored.items()
            if (base := Baseline.from_json(text)) is not None}


def baseline(client: redis.Redis, ns: Namespace, target: str, key: str) -> Baseline | None:
    text: Any = client.hget(state_key(ns, target), key)
    return Baseline.from_json(text)


def save(client: redis.Redis, ns: Namespace, target: str, key: str, base: Baseline) -> None:
    client.hset(state_key(ns, target), key, base.to_json())


def conflict_field(target: str, key: str) -> str:
    return f"{target}:{key}"


def record_conflict(client: redis.Redis, ns: Namespace, conflict: dict[str, Any]) -> None:
    client.hset(conflicts_key(ns), conflict_field(conflict["target"], conflict["key"]),
                json.dumps(conflict))


def conflict(client: redis.Redis, ns: Namespace, target: str, key: str) -> dict[str, Any] | None:
    text: Any = client.hget(conflicts_key(ns), conflict_field(target, key))
    return json.loads(text) if text else None


def conflicts(client: redis.Redis, ns: Namespace) -> list[dict[str, Any]]:
    """Open conflicts, oldest first."""
    stored: Any = client.hvals(conflicts_key(ns))
    return sorted((json.loads(text) for text in stored), key=lambda c: c["detected_at"])


def clear_conflict(client: redis.Redis, ns: Namespace, target: str, key: str) -> bool:
    return bool(client.hdel(conflicts_key(ns), conflict_field(target, key)))


def record_run(client: redis.Redis, ns: Namespace, target: str, summary: dict[str, Any]) -> None:
    client.hset(runs_key(ns), target, json.dumps(summary))


def runs(client: redis.Redis, ns: Namespace) -> dict[str, dict[str, Any]]:
    stored: Any = client.hgetall(runs_key(ns))
    return {target: json.loads(text) for target, text in stored.items()}


def claim_due(client: redis.Redis, ns: Namespace, target: str, interval_s: int) -> bool:
    """True (once per ``interval_s``) when a run of ``target`` is due."""
    return bool(client.set(ns.key("sync", "due", target), "1", nx=True, ex=interval_s))


def lock(client: redis.Redis, ns: Namespace, target: str) -> bool:
    """Take the right to run ``target``'s sync now."""
    return bool(client.set(ns.key("sync", "lock", target), "1", nx=True, ex=LOCK_S))


def unlock(client: redis.Redis, ns: Namespace, target: str) -> None:
    client.delete(ns.key("sync", "lock", target))
