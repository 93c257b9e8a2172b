"""Circuit breakers: a vendor that keeps failing is left alone for a while.

After ``THRESHOLD`` failed attempts in a row, the last of them a transport failure or a 5xx
answer (no success between them), a connector's breaker opens for a cooldown: its deliveries
wait for the cooldown instead of each tying up a worker process until its timeout, so the
other connectors keep their pace.
When the cooldown is over, attempts go out again; more failures open it again for twice as long
(at most ``MAX_COOLDOWN_S``); one success closes it.

The streak is the connector's health record's ``failures`` (``config_core.state.health``): one
counter for both. The breaker keeps only ``breaker_base`` (the streak when it last opened),
``open_until`` and ``cooldown_s`` in that record.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from config_core.state import health
from config_core.state.keys import Namespace

THRESHOLD = int(os.environ.get("APGCFG_BREAKER_THRESHOLD", "5"))
"""Failures in a row that open a breaker (``APGCFG_BREAKER_THRESHOLD``)."""

COOLDOWN_S = float(os.environ.get("APGCFG_BREAKER_COOLDOWN_S", "30"))
"""How long a breaker first stays open (``APGCFG_BREAKER_COOLDOWN_S``)."""

MAX_COOLDOWN_S = 300.0
"""Longest a breaker stays open at once."""


def breaker_key(ns: Namespace, connector: str) -> str:
    """The connector's health record, which holds its breaker."""
    return health.record_key(ns, connector)


@dataclass(frozen=True)
class Breaker:
    """A connector's breaker as stored."""

    failures: int = 0
    open_until: float = 0.0
    last_error: str | None = None

    @classmethod
    def parse(cls, stored: dict[str, str] | None) -> Breaker:
        stored = stored or {}
        streak = int(stored.get("failures") or 0) - int(stored.get("breaker_base") or 0)
        return cls(max(0, streak), float(stored.get("open_until") or 0), stored.get("last_error"))

    def open_for_s(self, now: float | None = None) -> float:
        """Seconds until the breaker lets attempts through again (0 when closed)."""
        return max(0.0, self.open_until - (now or time.time()))


_OPEN = """
-- KEYS: 1 record; ARGV: 1 now, 2 threshold, 3 first cooldown, 4 max cooldown
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local base = tonumber(redis.call('HGET', KEYS[1], 'breaker_base') or '0')
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if failures - base >= tonumber(ARGV[2]) and tonumber(ARGV[1]) >= open_until then
  local cooldown = tonumber(redis.call('HGET', KEYS[1], 'cooldown_s') or '0') * 2
  if cooldown < tonumber(ARGV[3]) then cooldown = tonumber(ARGV[3]) end
  if cooldown > tonumber(ARGV[4]) then cooldown = tonumber(ARGV[4]) end
  redis.call('HSET', KEYS[1], 'open_until', tonumber(ARGV[1]) + cooldown, 'cooldown_s', cooldown,
             'breaker_base', failures)
end
return failures
"""


def vendor_failed(client: Any, ns: Namespace, connector: str) -> None:
    """The failure just counted (``health.failed``) was the vendor's (no answer, or a 5xx):
    open the breaker if the streak since it last opened is long enough (``client`` may be a
    pipeline, queued after ``health.failed``)."""
    client.eval(_OPEN, 1, breaker_key(ns, connector), time.time(), THRESHOLD, COOLDOWN_S,
                MAX_COOLDOWN_S)
