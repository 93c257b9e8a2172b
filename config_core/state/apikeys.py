"""API keys for the HTTP API: each carries a role and is stored only as a SHA-256 hash.

A key reads ``apg_<id>_<secret>``; the id finds the record, the secret's hash must match.
Keys are random 256-bit values, so a plain SHA-256 (not a slow password hash) is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from config_core.access import validate_role
from config_core.errors import ConfigError
from config_core.state.keys import Namespace

PREFIX = "apg"
"""Every key starts with ``apg_``, so secret scanners can recognise one."""

DEFAULT_OVERLAP_S = 3600.0
"""How long a rotated key keeps working beside its successor, unless told otherwise."""


@dataclass
class ApiKey:
    """What is stored about a key (never the key itself)."""

    id: str
    role: str
    name: str
    owner: str | None
    secret_sha256: str
    created_at: float
    revoked_at: float | None = None
    expires_at: float | None = None
    """Set when the key was rotated: refused from then on."""
    replaces: str | None = None
    """The id of the key this one was rotated from."""

    @property
    def caller(self) -> str:
        """Who changes made with this key are attributed to (``changed_by``)."""
        return self.owner or f"apikey:{self.name or self.id}"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def public(self) -> dict[str, Any]:
        """The record without its hash, for listings."""
        shown = asdict(self)
        shown.pop("secret_sha256")
        return shown


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(ns: Namespace) -> str:
    return ns.key("apikeys")


async def create(redis: Any, ns: Namespace, role: str, name: str = "",
                 owner: str | None = None) -> tuple[str, ApiKey]:
    """Make a key; return the key (shown once) and its stored record."""
    validate_role(role, "role")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    record = ApiKey(key_id, role, name, owner, _hash(secret), time.time())
    await redis.hset(_key(ns), key_id, json.dumps(asdict(record)))
    return f"{PREFIX}_{key_id}_{secret}", record


async def listing(redis: Any, ns: Namespace) -> list[ApiKey]:
    """Every key's record, oldest first."""
    stored = await redis.hgetall(_key(ns))
    return sorted((ApiKey(**json.loads(text)) for text in stored.values()),
                  key=lambda record: record.created_at)


async def _record(redis: Any, ns: Namespace, key_id: str) -> ApiKey:
    text = await redis.hget(_key(ns), key_id)
    if text is None:
        raise ConfigError(f"no API key with id {key_id!r}")
    return ApiKey(**json.loads(text))


async def rotate(redis: Any, ns: Namespace, key_id: str,
                 overlap_s: float = DEFAULT_OVERLAP_S) -> tuple[str, ApiKey, ApiKey]:
    """Make a successor of key ``key_id`` (same role, name and owner); the old key keeps
    working for ``overlap_s`` seconds, then is refused. Returns the new key (shown once),
    its record and the old record. ``ConfigError`` for an unknown, revoked or expired key."""
    if not 0 <= overlap_s <= 365 * 86400:
        raise ConfigError(f"overlap_s must be between 0 and one year, got {overlap_s}")
    old = await _record(redis, ns, key_id)
    now = time.time()
    if old.revoked_at or old.expired(now):
        state = "revoked" if old.revoked_at else "expired"
        raise ConfigError(f"API key {key_id!r} is {state}; create a new key instead")
    key_id_new, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    new = ApiKey(key_id_new, old.role, old.name, old.owner, _hash(secret), now,
                 replaces=old.id)
    old.expires_at = min(now + overlap_s, old.expires_at or float("inf"))
    await redis.hset(_key(ns), mapping={old.id: json.dumps(asdict(old)),
                                        new.id: json.dumps(asdict(new))})
    return f"{PREFIX}_{key_id_new}_{secret}", new, old


async def revoke(redis: Any, ns: Namespace, key_id: str) -> ApiKey:
    """Revoke a key by id; ``ConfigError`` for an unknown id."""
    record = await _record(redis, ns, key_id)
    record.revoked_at = record.revoked_at or time.time()
    await redis.hset(_key(ns), key_id, json.dumps(asdict(record)))
    return record


async def authenticate(redis: Any, ns: Namespace, presented: str) -> ApiKey | None:
    """The live record of a presented key, or None for an unknown, wrong, revoked or expired
    (rotated, past its overlap) key."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    text = await redis.hget(_key(ns), parts[1])
    if text is None:
        return None
    record = ApiKey(**json.loads(text))
    live = not record.revoked_at and not record.expired(time.time())
    if not live or not hmac.compare_digest(record.secret_sha256, _hash(parts[2])):
        return None
    return record
