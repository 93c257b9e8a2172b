"""Circuit breakers: a vendor that keeps failing is left alone for a while.

After ``THRESHOLD`` transport failures or 5xx answers in a row (no success between them), a
connector's breaker opens for a cooldown: its deliveries wait for the cooldown instead of
each tying up a worker process until its timeout, so the other connectors keep their pace.
When the cooldown is over, attempts go out again; more failures open it again for twice as long
(at most ``MAX_COOLDOWN_S``); one success closes it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from config_core.state.keys import Namespace

THRESHOLD = int(os.environ.get("APGCFG_BREAKER_THRESHOLD", "5"))
"""Failures in a row that open a breaker (``APGCFG_BREAKER_THRESHOLD``)."""

COOLDOWN_S = float(os.environ.get("APGCFG_BREAKER_COOLDOWN_S", "30"))
"""How long a breaker first stays open (``APGCFG_BREAKER_COOLDOWN_S``)."""

MAX_COOLDOWN_S = 300.0
"""Longest a breaker stays open at once."""

KEEP_S = 24 * 3600
"""A breaker nobody touched for this long is forgotten."""


def breaker_key(ns: Namespace, connector: str) -> str:
    """Hash: failures, last_error, open_until, cooldown_s."""
    return ns.key("breaker", connector)


@dataclass(frozen=True)
class Breaker:
    """A connector's breaker as stored."""

    failures: int = 0
    open_until: float = 0.0
    last_error: str | None = None

    @classmethod
    def parse(cls, stored: dict[str, str] | None) -> Breaker:
        stored = stored or {}
        return cls(int(stored.get("failures") or 0), float(stored.get("open_until") or 0),
                   stored.get("last_error"))

    def open_for_s(self, now: float | None = None) -> float:
        """Seconds until the breaker lets attempts through again (0 when closed)."""
        return max(0.0, self.open_until - (now or time.time()))


_FAILED = """
-- KEYS: 1 breaker; ARGV: 1 now, 2 error, 3 threshold, 4 first cooldown, 5 max cooldown, 6 keep
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[2])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if failures >= tonumber(ARGV[3]) and tonumber(ARGV[1]) >= open_until then
  local cooldown = tonumber(redis.call('HGET', KEYS[1], 'cooldown_s') or '0') * 2
  if cooldown < tonumber(ARGV[4]) then cooldown = tonumber(ARGV[4]) end
  if cooldown > tonumber(ARGV[5]) then cooldown = tonumber(ARGV[5]) end
  redis.call('HSET', KEYS[1], 'open_until', tonumber(ARGV[1]) + cooldown, 'cooldown_s', cooldown,
             'failures', 0)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return failures
"""


def failed(client: Any, ns: Namespace, connector: str, error: str) -> None:
    """Count a failure of ``connector``'s vendor (``client`` may be a pipeline)."""
    client.eval(_FAILED, 1, breaker_key(ns, connector), time.time(), error[:300], THRESHOLD,
                COOLDOWN_S, MAX_COOLDOWN_S, KEEP_S)


def succeeded(client: Any, ns: Namespace, connector: str) -> None:
    """The vendor answered: the breaker closes (``client`` may be a pipeline)."""
    client.delete(breaker_key(ns, connector))
