"""The identity directory: users, groups, roles synced from identity providers, in Redis.

A sync is all or nothing: the provider's whole directory is fetched first, then replaced in
one script (users of that provider, its metadata, and the combined role of every email).
A failure keeps the previous directory and is recorded in the provider's metadata.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from config_core.access import RANK
from config_core.errors import ConfigError
from config_core.state.keys import Namespace

_REPLACE = """
-- KEYS: 1 provider users hash, 2 provider meta hash, 3 providers set, 4 roles hash
-- ARGV: 1 provider, 2 users json ({email: user json text}), 3 meta json, 4 namespace prefix
redis.call('DEL', KEYS[1])
for email, user in pairs(cjson.decode(ARGV[2])) do
  redis.call('HSET', KEYS[1], email, user)
end
redis.call('DEL', KEYS[2])
for name, value in pairs(cjson.decode(ARGV[3])) do redis.call('HSET', KEYS[2], name, value) end
redis.call('SADD', KEYS[3], ARGV[1])
local rank = {read = 1, write = 2, admin = 3}
local best = {}
for _, provider in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local users = redis.call('HGETALL', ARGV[4] .. 'dir:' .. provider .. ':users')
  for i = 1, #users, 2 do
    local user = cjson.decode(users[i + 1])
    local role = user['role']
    if user['active'] == true and type(role) == 'string' and rank[role] then
      if not best[users[i]] or rank[role] > rank[best[users[i]]] then best[users[i]] = role end
    end
  end
end
redis.call('DEL', KEYS[4])
for email, role in pairs(best) do redis.call('HSET', KEYS[4], email, role) end
return 1
"""


ROLES_PART = "roles"
"""Key suffix of the hash lower-case email → role (read, write, admin)."""

LOCK_S = 300
"""A provider being synced is not synced again by another worker for this long."""


def roles_key(ns: Namespace) -> str:
    """Hash: lower-case email → role, from every provider's directory."""
    return ns.key(ROLES_PART)


def users_key(ns: Namespace, provider: str) -> str:
    return ns.key("dir", provider, "users")


def meta_key(ns: Namespace, provider: str) -> str:
    return ns.key("dir", provider, "meta")


def providers_key(ns: Namespace) -> str:
    return ns.key("dir", "providers")


def replace(client: redis.Redis, ns: Namespace, provider: str, users: list[dict[str, Any]],
            duration_s: float) -> dict[str, Any]:
    """Store ``provider``'s complete directory and recompute every role; return its metadata."""
    by_email = {_checked(user)["email"].lower(): json.dumps(user) for user in users}
    meta = {"status": "ok", "last_sync": time.time(), "last_success": time.time(),
            "users": len(by_email), "duration_s": round(duration_s, 3), "error": ""}
    client.eval(_REPLACE, 4, users_key(ns, provider), meta_key(ns, provider),
                providers_key(ns), roles_key(ns), provider, json.dumps(by_email),
                json.dumps({k: str(v) for k, v in meta.items()}), ns.prefix)
    return meta


def record_failure(client: redis.Redis, ns: Namespace, provider: str, error: str) -> None:
    """Keep the previous directory; note the failed sync in the provider's metadata."""
    client.hset(meta_key(ns, provider), mapping={"status": "error", "error": error,
                                                 "last_sync": str(time.time())})


def status(client: redis.Redis, ns: Namespace, provider: str) -> dict[str, str]:
    """The provider's sync metadata (status, last_sync, last_success, users, error)."""
    found: Any = client.hgetall(meta_key(ns, provider))
    return dict(found)


def user(client: redis.Redis, ns: Namespace, provider: str, email: str) -> dict[str, Any] | None:
    """One synced user as ``provider`` reported them."""
    text: Any = client.hget(users_key(ns, provider), email.lower())
    return json.loads(text) if text else None


def _checked(user: dict[str, Any]) -> dict[str, Any]:
    email = user.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise ConfigError(f"identity provider returned a user without a valid email: {email!r}")
    if user.get("role") is not None and user["role"] not in RANK:
        raise ConfigError(f"identity provider mapped {email} to unknown role {user['role']!r}")
    return user


def lock(client: redis.Redis, ns: Namespace, provider: str) -> bool:
    """Take the right to sync ``provider`` now (one sync at a time, for ``LOCK_S``)."""
    return bool(client.set(ns.key("dir", provider, "lock"), "1", nx=True, ex=LOCK_S))


def unlock(client: redis.Redis, ns: Namespace, provider: str) -> None:
    """Give the right to sync ``provider`` back."""
    client.delete(ns.key("dir", provider, "lock"))
