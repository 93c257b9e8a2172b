"""Multi-environment sync: push this environment's keys to the other environments' HTTP APIs.

The relay's sweep publishes ``workers.env_sync`` (namespace, target) once per ``sync_interval``
for every target of ``integrations.multi_env_sync``; ``apgcfg sync run`` calls ``run`` inline.
For each key the target syncs, the versions here and there are compared with those of the last
sync (``config_core.sync.decide``): a change made only here is pushed (a PUT with an
idempotency key, so a retried push is applied once; ``approval_required`` makes it a change
request there), a change on both sides is a conflict handled by ``conflict_resolution``.
Sync only pushes: it never writes into this environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from config_core.errors import ApgConfigError, ConfigError
from config_core.events import Change
from config_core.masking import mask_for_key
from config_core.state import sync as state
from config_core.state import values
from config_core.state.keys import Namespace
from config_core.state.values import event_only, write_sync
from config_core.sync import SYNC_CONFLICT, SYNC_KEY, Action, Baseline, Side, SyncSettings, decide
from connectors.environment_api import EnvironmentApi, Remote
from connectors.errors import Rejected

log = logging.getLogger(__name__)

TASK = "workers.env_sync"
"""The task that syncs one (namespace, target)."""

ACTOR = "multi_env_sync"
"""``changed_by`` of the events sync emits."""


@dataclass(frozen=True)
class Local:
    """A key here: stored JSON, masked JSON, version."""

    value_json: str
    masked_json: str
    version: int

    def side(self) -> Side:
        shown = self.value_json if self.masked_json == self.value_json else None
        return Side(self.version, shown)


@dataclass
class Job:
    """One target's sync from one namespace."""

    client: redis.Redis
    ns: Namespace
    settings: SyncSettings
    target: str
    api: EnvironmentApi


def settings_of(client: redis.Redis, ns: Namespace) -> SyncSettings | None:
    """The sync settings of ``ns`` (None when not configured)."""
    stored = values.read_json(client, ns, SYNC_KEY)
    return SyncSettings.parse(stored, ns.environment) if stored else None


def due_targets(client: redis.Redis, ns: Namespace) -> list[str]:
    """Targets of ``ns`` whose run is due now (each claimed for one ``sync_interval``)."""
    settings = settings_of(client, ns)
    if settings is None:
        return []
    return [name for name in settings.targets
            if state.claim_due(client, ns, name, settings.interval_s)]


def job(client: redis.Redis, ns: Namespace, target: str) -> Job:
    """What syncing ``target`` from ``ns`` needs; ``ConfigError`` naming what is missing."""
    settings = settings_of(client, ns)
    if settings is None:
        raise ConfigError(f"{SYNC_KEY} is not configured in {ns.environment}")
    if target not in settings.targets:
        raise ConfigError(f"{target!r} is not a target of {ns.environment} "
                          f"(targets: {sorted(settings.targets)})")
    entry = settings.targets[target]
    return Job(client, ns, settings, target,
               EnvironmentApi(target, entry.endpoint, entry.api_key))


def run(client: redis.Redis, ns: Namespace, target: str, *,
        retry_refused: bool = False) -> dict[str, Any]:
    """Sync every key ``target`` takes; the summary is recorded and returned."""
    if not state.lock(client, ns, target):
        return {"target": target, "status": "busy", "detail": "another run is going"}
    started = time.time()
    try:
        counts = _run_job(job(client, ns, target), retry_refused)
        summary = {"target": target, "status": "ok", **counts}
    except ApgConfigError as exc:
        log.warning("sync of %s to %s failed: %s", ns.name, target, exc)
        summary = {"target": target, "status": "error", "error": str(exc)[:500]}
    finally:
        state.unlock(client, ns, target)
    summary.update(started_at=started, finished_at=time.time())
    state.record_run(client, ns, target, summary)
    return summary


def _run_job(work: Job, retry_refused: bool) -> dict[str, int]:
    stored: Any = work.client.zrange(values.index_key(work.ns), 0, -1)
    keys = [key for key in stored if work.settings.targets[work.target].syncs(key)]
    outcomes = Counter(sync_key(work, key, retry_refused) for key in keys)
    return {"keys": len(keys), **outcomes}


def sync_key(work: Job, key: str, retry_refused: bool = False) -> str:
    """Sync one key to the job's target; returns what happened."""
    local = _local(work, key)
    if local is None:
        return "absent"
    last = state.baseline(work.client, work.ns, work.target, key)
    if last is not None and last.pending:
        waiting = _settle_pending(work, key, local, last)
        if waiting:
            return "pending"
    remote = work.api.get(key)
    if last is not None and last.extra.pop("approved", None):
        last.target_version = remote.version if remote else 0
        state.save(work.client, work.ns, work.target, key, last)
    target = Side(remote.version, json.dumps(remote.value)) if remote else Side(0)
    action = decide(local.side(), target, last, work.settings.resolution,
                    retry_refused=retry_refused)
    return _act(work, key, action, local, remote, last)


def _act(work: Job, key: str, action: Action, local: Local, remote: Remote | None,
         last: Baseline | None) -> str:
    if action is Action.PUSH:
        return push(work, key, local, last)
    if action is Action.CONFLICT:
        return _conflict(work, key, local, remote, last)
    if action in (Action.RECORD, Action.KEEP_TARGET):
        _agreed(work, key, local.version, remote.version if remote else 0)
        return "in_sync" if action is Action.RECORD else "kept_target"
    return action.value


def _settle_pending(work: Job, key: str, local: Local, last: Baseline) -> bool:
    """Check a push waiting for approval there; True while it still waits for this version."""
    pending = last.pending or {}
    request = work.api.approval(pending["request_id"])
    status = request.get("status") if request else "unknown"
    if status == "pending" and pending["source_version"] == local.version:
        return True
    last.pending = None
    if status == "approved":
        last.source_version = pending["source_version"]
        last.extra["approved"] = True  # the target's version is read next
    elif status != "pending":
        last.refused_version = pending["source_version"]
        last.refused_reason = f"change request {pending['request_id']} is {status} there"
    state.save(work.client, work.ns, work.target, key, last)
    return False


def push(work: Job, key: str, local: Local, last: Baseline | None) -> str:
    """Send the key's value here to the target; returns pushed, pending or refused."""
    target = work.settings.targets[work.target]
    base = last or Baseline()
    try:
        result = work.api.put(
            key, json.loads(local.value_json), idempotency_key=_push_id(work, key, local),
            reason=f"multi-environment sync from {work.ns.environment} (version "
                   f"{local.version})", require_approval=target.approval_required)
    except Rejected as exc:
        log.warning("sync of %s to %s refused: %s", key, work.target, exc)
        base.refused_version, base.refused_reason = local.version, str(exc)[:300]
        state.save(work.client, work.ns, work.target, key, base)
        return "refused"
    base.refused_version = base.refused_reason = None
    state.clear_conflict(work.client, work.ns, work.target, key)
    if result.status == "pending_approval":
        base.pending = {"request_id": result.request_id, "source_version": local.version}
        state.save(work.client, work.ns, work.target, key, base)
        return "pending"
    base.source_version, base.target_version = local.version, int(result.version or 0)
    state.save(work.client, work.ns, work.target, key, base)
    return "pushed"


def _push_id(work: Job, key: str, local: Local) -> str:
    """The same for every attempt to push this version of the key to this target."""
    seed = "\x1f".join([work.ns.name, work.target, key, str(local.version), local.value_json])
    return "sync-" + hashlib.sha256(seed.encode()).hexdigest()[:48]


def _agreed(work: Job, key: str, source_version: int, target_version: int) -> None:
    state.save(work.client, work.ns, work.target, key, Baseline(source_version, target_version))
    state.clear_conflict(work.client, work.ns, work.target, key)


def _conflict(work: Job, key: str, local: Local, remote: Remote | None,
              last: Baseline | None) -> str:
    """Record a conflict (once per pair of versions) and emit ``sync.conflict``."""
    target_version = remote.version if remote else 0
    known = state.conflict(work.client, work.ns, work.target, key)
    if known and (known["source_version"], known["target_version"]) == (local.version,
                                                                         target_version):
        return "conflict"
    target_value = mask_for_key(key, remote.value) if remote else None
    details = {"target": work.target, "key": key, "source_version": local.version,
               "target_version": target_version,
               "synced_source_version": last.source_version if last else None,
               "synced_target_version": last.target_version if last else None,
               "source_value": json.loads(local.masked_json), "target_value": target_value}
    change = Change(SYNC_CONFLICT, work.ns.tenant, work.ns.environment, key,
                    details["source_value"], ACTOR,
                    f"{key} changed in {work.ns.environment} and in {work.target} since their "
                    "last sync", {**details, "resolution": "manual"})
    write_sync(work.client, work.ns, event_only(change, local.masked_json))
    state.record_conflict(work.client, work.ns, {**details, "detected_at": time.time(),
                                                 "event_id": change.event_id})
    log.info("sync conflict: %s in %s and %s", key, work.ns.environment, work.target)
    return "conflict"


def _local(work: Job, key: str) -> Local | None:
    value, masked, version = work.client.hmget(values.value_key(work.ns, key), "value",
                                               "masked", "version")
    if value is None:
        return None
    return Local(str(value), str(masked or value), int(version or 0))


def resolve(client: redis.Redis, ns: Namespace, key: str, take: str,
            target: str | None = None) -> dict[str, Any]:
    """Settle a conflict: ``take="source"`` pushes this value there, ``"target"`` keeps
    theirs (nothing is written; later changes here are pushed again)."""
    if take not in ("source", "target"):
        raise ConfigError(f"take must be 'source' or 'target', got {take!r}")
    found = [c for c in state.conflicts(client, ns)
             if c["key"] == key and target in (None, c["target"])]
    if not found:
        raise KeyError(f"no sync conflict for {key!r}" + (f" with {target}" if target else ""))
    if len(found) > 1:
        raise ConfigError(f"{key!r} is in conflict with several environments "
                          f"({[c['target'] for c in found]}); name one")
    work = job(client, ns, found[0]["target"])
    local = _local(work, key)
    if local is None:
        raise KeyError(f"{key!r} has no value here any more")
    if take == "source":
        outcome = push(work, key, local, state.baseline(client, ns, work.target, key))
    else:
        remote = work.api.get(key)
        _agreed(work, key, local.version, remote.version if remote else 0)
        outcome = "kept_target"
    state.clear_conflict(client, ns, work.target, key)
    return {"key": key, "target": work.target, "took": take, "outcome": outcome}


def status(client: redis.Redis, ns: Namespace) -> dict[str, Any]:
    """Each target's settings (never the API key), last run and per-key sync state."""
    settings = settings_of(client, ns)
    runs = state.runs(client, ns)
    targets = {}
    for name, target in (settings.targets if settings else {}).items():
        targets[name] = {
            "endpoint": target.endpoint, "sync_patterns": list(target.patterns),
            "approval_required": target.approval_required, "last_run": runs.get(name),
            "keys": {key: json.loads(base.to_json())
                     for key, base in sorted(state.baselines(client, ns, name).items())}}
    return {"environment": ns.environment, "configured": settings is not None,
            "sync_interval": settings.interval_s if settings else None,
            "conflict_resolution": settings.resolution if settings else None,
            "targets": targets, "conflicts": len(state.conflicts(client, ns))}
