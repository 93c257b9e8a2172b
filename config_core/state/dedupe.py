"""What connectors created for an event (so a retry never creates it twice), and the newest
version of a key each connector acted on (so a stale change does not start a build)."""

from __future__ import annotations

import json
from typing import Any

from config_core import settings
from config_core.state.keys import Namespace


def dedupe_key(ns: Namespace, event_id: str) -> str:
    """Hash: ``connector:step`` → ``{"state": creating|created, "ref": ...}``."""
    return ns.key("dedupe", event_id)


def triggered_key(ns: Namespace) -> str:
    """Hash: ``connector:key`` → newest version a connector has acted on."""
    return ns.key("triggered")


def created(client: Any, ns: Namespace, event_id: str, field: str) -> dict[str, Any] | None:
    text = client.hget(dedupe_key(ns, event_id), field)
    return json.loads(text) if text else None


def mark(client: Any, ns: Namespace, event_id: str, field: str, state: str,
         ref: dict[str, Any] | None) -> None:
    pipe = client.pipeline(transaction=True)
    pipe.hset(dedupe_key(ns, event_id), field, json.dumps({"state": state, "ref": ref}))
    pipe.expire(dedupe_key(ns, event_id), settings.EVENT_TTL_S)
    pipe.execute()


def forget(client: Any, ns: Namespace, event_id: str, field: str) -> None:
    client.hdel(dedupe_key(ns, event_id), field)


_CLAIM_NEWEST = """
local newest = tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0
if newest > tonumber(ARGV[2]) then return newest end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return false
"""


def claim_newest(client: Any, ns: Namespace, field: str, version: int) -> int | None:
    """Claim ``version`` as the newest acted on; the newer version when this one is stale."""
    newer: Any = client.eval(_CLAIM_NEWEST, 1, triggered_key(ns), field, version)
    return int(newer) if newer else None
