"""Buffers of batched deliveries, and the batches claimed from them (flushed as Celery chords).

Events bound for a batched connector (Splunk HEC always; chat connectors when
``integrations.batching`` is set) wait in a Redis list. A flush claims up to ``batch_size`` of
them into a batch record (with a lease) and runs a chord: the header prepares each event, the
body sends them with one ``send_batch``. A worker that dies between the claim and the post
leaves the batch record behind; when its lease runs out the sweeper runs the batch again, so
no event is lost, and none is sent twice by a second claim.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import redis

from config_core.state.keys import ROOT, Namespace

BATCHING_KEY = f"{ROOT}:batching"
"""Set of ``namespace|connector`` that have used a buffer (the sweeper looks at these)."""

LEASE_S = int(os.environ.get("APGCFG_BATCH_LEASE_S", "120"))
"""A claimed batch not finished by then (its worker died) is run again by the sweeper."""

_APPEND = """
-- ARGV: 1 now, 2 size, 3 interval, 4 namespace|connector, 5... event ids
redis.call('RPUSH', KEYS[1], unpack(ARGV, 5))
if redis.call('HSETNX', KEYS[2], 'since', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'size', ARGV[2], 'interval', ARGV[3])
end
redis.call('SADD', KEYS[3], ARGV[4])
return {redis.call('LLEN', KEYS[1]), redis.call('HGET', KEYS[2], 'since')}
"""

_CLAIM = """
-- KEYS: 1 buffer, 2 buffer meta, 3 in-flight zset; ARGV: 1 now, 2 batch key prefix,
--       3 batch id, 4 lease seconds, 5 force
local n = redis.call('LLEN', KEYS[1])
if n == 0 then return {'empty'} end
local meta = redis.call('HMGET', KEYS[2], 'since', 'size', 'interval')
local since, size, interval = tonumber(meta[1]) or 0, tonumber(meta[2]) or 1, tonumber(meta[3]) or 0
local wait = since + interval - tonumber(ARGV[1])
if ARGV[5] ~= '1' and n < size and wait > 0 then return {'wait', tostring(wait)} end
local ids = redis.call('LRANGE', KEYS[1], 0, size - 1)
redis.call('LTRIM', KEYS[1], size, -1)
redis.call('SET', ARGV[2] .. ARGV[3], cjson.encode({ids = ids, attempts = 0}))
redis.call('ZADD', KEYS[3], tonumber(ARGV[1]) + tonumber(ARGV[4]), ARGV[3])
local left = redis.call('LLEN', KEYS[1])
if left == 0 then
  redis.call('HDEL', KEYS[2], 'since')
else
  redis.call('HSET', KEYS[2], 'since', ARGV[1])
end
return {'batch', ARGV[3], left, size, tostring(interval)}
"""


def buffer_key(ns: Namespace, connector: str) -> str:
    return ns.key("buffer", connector)


def meta_key(ns: Namespace, connector: str) -> str:
    return ns.key("buffer", connector, "meta")


def inflight_key(ns: Namespace, connector: str) -> str:
    return ns.key("batches", connector)


def batch_prefix(ns: Namespace, connector: str) -> str:
    return ns.key("batch", connector, "")


def append(client: redis.Redis, ns: Namespace, connector: str, event_ids: list[str],
           policy: tuple[int, float]) -> tuple[int, float]:
    """Buffer ``event_ids``; return how many wait now and when the oldest arrived."""
    size, interval = policy
    reply: Any = client.eval(_APPEND, 3, buffer_key(ns, connector), meta_key(ns, connector),
                             BATCHING_KEY, time.time(), size, interval,
                             f"{ns.name}|{connector}", *event_ids)
    return int(reply[0]), float(reply[1])


def claim(client: redis.Redis, ns: Namespace, connector: str, *, force: bool = False
          ) -> dict[str, Any]:
    """Take the next batch if one is due: ``{"status": "batch"|"wait"|"empty", ...}``."""
    reply: Any = client.eval(_CLAIM, 3, buffer_key(ns, connector), meta_key(ns, connector),
                             inflight_key(ns, connector), time.time(),
                             batch_prefix(ns, connector), uuid.uuid4().hex, LEASE_S,
                             "1" if force else "0")
    if reply[0] == "wait":
        return {"status": "wait", "wait_s": float(reply[1])}
    if reply[0] == "empty":
        return {"status": "empty"}
    return {"status": "batch", "batch_id": reply[1], "left": int(reply[2]),
            "size": int(reply[3]), "interval_s": float(reply[4])}


def batch(client: redis.Redis, ns: Namespace, connector: str, batch_id: str
          ) -> dict[str, Any] | None:
    """A claimed batch: ``{"ids": [...], "attempts": n}``, or None once it is done."""
    text: Any = client.get(batch_prefix(ns, connector) + batch_id)
    return json.loads(text) if text else None


def update(client: redis.Redis, ns: Namespace, connector: str, batch_id: str,
           ids: list[str], attempts: int, lease_s: float) -> None:
    """Keep a batch's remaining events and push its lease past its next attempt."""
    pipe = client.pipeline(transaction=True)
    pipe.set(batch_prefix(ns, connector) + batch_id,
             json.dumps({"ids": ids, "attempts": attempts}))
    pipe.zadd(inflight_key(ns, connector), {batch_id: time.time() + lease_s})
    pipe.execute()


def finish(client: redis.Redis, ns: Namespace, connector: str, batch_id: str) -> None:
    """Forget a batch whose every event is delivered or dead."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(batch_prefix(ns, connector) + batch_id)
    pipe.zrem(inflight_key(ns, connector), batch_id)
    pipe.execute()


def expired(client: redis.Redis) -> list[tuple[Namespace, str, str]]:
    """Batches whose lease ran out (their worker died): (namespace, connector, batch id)."""
    found = []
    members: Any = client.smembers(BATCHING_KEY)
    for member in members:
        name, _, connector = member.partition("|")
        ns = Namespace.parse(name)
        ids: Any = client.zrangebyscore(inflight_key(ns, connector), "-inf", time.time())
        for batch_id in ids:
            client.zadd(inflight_key(ns, connector), {batch_id: time.time() + LEASE_S})
            found.append((ns, connector, batch_id))
    return found


def overdue(client: redis.Redis, grace_s: float = 30.0) -> list[tuple[Namespace, str]]:
    """Buffers whose oldest event waited past its interval plus ``grace_s`` (a lost timer)."""
    found = []
    members: Any = client.smembers(BATCHING_KEY)
    for member in members:
        name, _, connector = member.partition("|")
        ns = Namespace.parse(name)
        meta: Any = client.hmget(meta_key(ns, connector), "since", "interval")
        if meta[0] and time.time() - float(meta[0]) > float(meta[1] or 0) + grace_s:
            found.append((ns, connector))
    return found


def take_posting(client: redis.Redis, ns: Namespace, connector: str, batch_id: str) -> bool:
    """Take the right to post a batch now (two runs of one batch never post at once)."""
    return bool(client.set(batch_prefix(ns, connector) + batch_id + ":posting", "1", nx=True,
                           ex=LEASE_S))


def release_posting(client: redis.Redis, ns: Namespace, connector: str, batch_id: str) -> None:
    client.delete(batch_prefix(ns, connector) + batch_id + ":posting")
