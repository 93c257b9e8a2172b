"""Multi-environment sync: its settings, and what to do with one key (a pure module).

The section is the guide's::

    {"environments": {"staging": {"endpoint": "https://staging-config.company.com",
                                  "api_key": "${env:STAGING_API_KEY}",
                                  "sync_patterns": ["app.*", "features.*"]},
                      "production": {"endpoint": "...", "api_key": "...",
                                     "sync_patterns": ["app.*"], "approval_required": True}},
     "sync_interval": 300, "conflict_resolution": "manual"}

Each environment is a target of this one (its own entry, the one named like this service's
environment, is skipped): every ``sync_interval`` seconds, keys matching the target's
``sync_patterns`` are pushed to its HTTP API. ``integrations.*`` keys are never synced: they
configure each environment's own service.

``decide`` compares a key's version here and there with the versions of the last sync and says
what to do; the worker (``workers.env_sync``) does the I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from config_core import hooks
from config_core.errors import ConfigError
from config_core.routing import matches_any

SYNC_KEY = "integrations.multi_env_sync"
"""Where the sync settings are stored."""

SYNC_CONFLICT = "sync.conflict"
"""Event emitted when a key changed here and in a target since their last sync (``manual``)."""

RESOLUTIONS = ("manual", "source_wins", "target_wins")
"""What happens to a key changed on both sides: recorded as a conflict, pushed, or left."""

DEFAULT_RESOLUTION = "manual"
DEFAULT_INTERVAL_S = 300
MAX_INTERVAL_S = 7 * 24 * 3600
"""The longest ``sync_interval``: a week."""

MAX_ENVIRONMENTS = 50
MAX_PATTERNS = 100

_ENV_REF_RE = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOP_FIELDS = ("environments", "sync_interval", "conflict_resolution")
_ENV_FIELDS = ("endpoint", "api_key", "sync_patterns", "approval_required")
_WHERE = SYNC_KEY


@dataclass(frozen=True)
class Target:
    """An environment this one pushes to."""

    name: str
    endpoint: str
    api_key: str
    """As stored: a literal key or a ``${env:NAME}`` reference (resolved by the worker)."""
    patterns: tuple[str, ...]
    approval_required: bool = False

    def syncs(self, key: str) -> bool:
        """True when ``key`` is pushed to this target."""
        return not key.startswith("integrations.") and matches_any(key, self.patterns)

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {self.endpoint!r}, patterns={list(self.patterns)})"


@dataclass(frozen=True)
class SyncSettings:
    """The validated ``integrations.multi_env_sync`` section."""

    targets: dict[str, Target]
    interval_s: int = DEFAULT_INTERVAL_S
    resolution: str = DEFAULT_RESOLUTION

    @classmethod
    def parse(cls, value: Any, environment: str) -> SyncSettings:
        """The settings as seen from ``environment`` (its own entry is not a target)."""
        validate_multi_env_sync(value)
        targets = {name: Target(name, entry["endpoint"].rstrip("/"), entry["api_key"],
                                tuple(entry["sync_patterns"]),
                                bool(entry.get("approval_required", False)))
                   for name, entry in value["environments"].items() if name != environment}
        return cls(targets, int(value.get("sync_interval", DEFAULT_INTERVAL_S)),
                   value.get("conflict_resolution", DEFAULT_RESOLUTION))


def validate_multi_env_sync(value: Any) -> None:
    """Refuse a malformed ``integrations.multi_env_sync`` value, naming the bad field."""
    if not isinstance(value, dict):
        raise ConfigError(f"{_WHERE} must be a dict with 'environments', 'sync_interval' and "
                          "'conflict_resolution'")
    _no_unknown(_WHERE, value, _TOP_FIELDS)
    environments = value.get("environments")
    if not isinstance(environments, dict) or not 1 <= len(environments) <= MAX_ENVIRONMENTS:
        raise ConfigError(f"{_WHERE}.environments must be a dict of 1 to {MAX_ENVIRONMENTS} "
                          "environments: name → {endpoint, api_key, sync_patterns, "
                          "approval_required}")
    for name, entry in environments.items():
        _validate_environment(name, entry)
    interval = value.get("sync_interval", DEFAULT_INTERVAL_S)
    if (isinstance(interval, bool) or not isinstance(interval, int)
            or not 1 <= interval <= MAX_INTERVAL_S):
        raise ConfigError(f"{_WHERE}.sync_interval must be an integer number of seconds from 1 "
                          f"to {MAX_INTERVAL_S:,}, got {interval!r}")
    resolution = value.get("conflict_resolution", DEFAULT_RESOLUTION)
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"{_WHERE}.conflict_resolution must be one of {list(RESOLUTIONS)}, "
                          f"got {resolution!r}")


def _validate_environment(name: Any, entry: Any) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{_WHERE}.environments: {name!r} is not an environment name "
                          "(1 to 64 of A-Z a-z 0-9 _ -)")
    where = f"{_WHERE}.environments.{name}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a dict with endpoint, api_key and sync_patterns")
    _no_unknown(where, entry, _ENV_FIELDS)
    endpoint = entry.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError(f"{where}.endpoint is required: the environment's HTTP API base URL")
    problem = hooks.catalog().endpoint_problem(endpoint)
    if problem:
        raise ConfigError(f"{where}.endpoint {problem}")
    api_key = entry.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip():
        raise ConfigError(f"{where}.api_key is required: an API key of that environment "
                          "(write role), best as ${env:NAME}")
    if api_key.startswith("${") and not _ENV_REF_RE.match(api_key):
        raise ConfigError(f"{where}.api_key looks like a reference but is not ${{env:NAME}}")
    patterns = entry.get("sync_patterns")
    if (not isinstance(patterns, list) or not 1 <= len(patterns) <= MAX_PATTERNS
            or not all(isinstance(p, str) and p for p in patterns)):
        raise ConfigError(f"{where}.sync_patterns must be a list of 1 to {MAX_PATTERNS} "
                          "non-empty key patterns (glob, * spans dots)")
    if not isinstance(entry.get("approval_required", False), bool):
        raise ConfigError(f"{where}.approval_required must be true or false")


def _no_unknown(where: str, value: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(name) for name in set(value) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {unknown}; known: {list(known)}")


# what to do with one key ---------------------------------------------------------------------


class Action(StrEnum):
    """The outcome of comparing one key here and in a target."""

    IN_SYNC = "in_sync"
    """Nothing changed since the last sync."""
    PUSH = "push"
    """Send this environment's value to the target."""
    RECORD = "record"
    """Both sides already hold the same value: remember the versions, send nothing."""
    TARGET_AHEAD = "target_ahead"
    """Only the target changed since the last sync: nothing to send (sync only pushes)."""
    CONFLICT = "conflict"
    """Both changed (``manual``): record a conflict, send nothing."""
    KEEP_TARGET = "keep_target"
    """Both changed (``target_wins``): the target keeps its value; remember the versions."""
    REFUSED = "refused"
    """The target refused this version before (409, 422, a rejected approval): wait for the
    next change here, or ``apgcfg sync run --retry-refused``."""


@dataclass(frozen=True)
class Side:
    """A key's state in one environment: its version (0: no value) and, when comparable, its
    value (None when it has none or it is masked)."""

    version: int
    value_json: str | None = None


@dataclass
class Baseline:
    """What the last sync of a key to one target left behind (stored per target and key)."""

    source_version: int = 0
    target_version: int = 0
    pending: dict[str, Any] | None = None
    """A push waiting for approval at the target: ``{"request_id", "source_version"}``."""
    refused_version: int | None = None
    refused_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"source_version": self.source_version,
                           "target_version": self.target_version, "pending": self.pending,
                           "refused_version": self.refused_version,
                           "refused_reason": self.refused_reason, **self.extra})

    @classmethod
    def from_json(cls, text: str | None) -> Baseline | None:
        if not text:
            return None
        data = json.loads(text)
        known = {"source_version", "target_version", "pending", "refused_version",
                 "refused_reason"}
        return cls(int(data.get("source_version", 0)), int(data.get("target_version", 0)),
                   data.get("pending"), data.get("refused_version"), data.get("refused_reason"),
                   {k: v for k, v in data.items() if k not in known})


def decide(source: Side, target: Side, last: Baseline | None, resolution: str, *,
           retry_refused: bool = False) -> Action:
    """What to do with one key, given its state here (``source``), in the target, and at the
    last sync. A key never synced counts as changed here, and as changed there when the
    target holds a value."""
    source_changed = last is None or source.version != last.source_version
    target_changed = target.version != (last.target_version if last else 0)
    if not source_changed and not target_changed:
        return Action.IN_SYNC
    if _same_value(source, target):
        return Action.RECORD
    if (last is not None and last.refused_version == source.version and not target_changed
            and not retry_refused):
        return Action.REFUSED
    if not target_changed:
        return Action.PUSH
    if not source_changed:
        return Action.TARGET_AHEAD
    return {"manual": Action.CONFLICT, "source_wins": Action.PUSH,
            "target_wins": Action.KEEP_TARGET}[resolution]


def _same_value(source: Side, target: Side) -> bool:
    if source.value_json is None or target.value_json is None:
        return False
    return bool(json.loads(source.value_json) == json.loads(target.value_json))
