"""Delivery counters kept in Redis, so that every worker process adds to the same figures.

A delivery's outcome is counted by ``ledger.finish``'s script, in the same step that records
it (``FINISH_COUNT_LUA`` is part of that script), so the counters never disagree with the
ledger: a final outcome is counted once when a row moves to it, a retry each time a row is
(re)scheduled as retrying, and a delivered row's latency goes into a histogram.
``metrics`` reads them back.
"""

from __future__ import annotations

import bisect
import math

from config_core.state.keys import Namespace

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Upper bounds of the delivery latency histogram, in seconds (``+Inf`` is added)."""

INF = "+Inf"

RETRYING = "retrying"
"""The counted status that stands for retries."""

FINAL_OUTCOMES = ("delivered", "skipped", "dead")
"""Outcomes that end a delivery (until a replay), counted by ``apgcfg_deliveries_total``."""


def outcomes_key(ns: Namespace) -> str:
    """Hash ``<connector>|<status>|<error kind>`` → deliveries that reached it (retrying:
    times); the kind is empty for delivered and skipped ones."""
    return ns.key("metrics", "outcomes")


def latency_key(ns: Namespace) -> str:
    """Hash ``<connector>|<bound>`` → deliveries whose latency fell in that bucket (not
    cumulative), plus ``<connector>|sum`` (seconds) and ``<connector>|count``."""
    return ns.key("metrics", "latency")


FINISH_COUNT_LUA = """
-- metrics (config_core/state/metrics.py): KEYS[5] outcomes hash, KEYS[6] latency hash;
-- ARGV[1] connector, ARGV[4] new status, ARGV[11] latency bucket ('' = none), ARGV[12] latency s,
-- ARGV[13] error kind ('' = none); ``before``: the status the row had ('' when there was none)
if ARGV[4] == 'retrying' or ARGV[4] ~= before then
  redis.call('HINCRBY', KEYS[5], ARGV[1] .. '|' .. ARGV[4] .. '|' .. ARGV[13], 1)
end
if ARGV[4] == 'delivered' and before ~= 'delivered' and ARGV[11] ~= '' then
  redis.call('HINCRBY', KEYS[6], ARGV[1] .. '|' .. ARGV[11], 1)
  redis.call('HINCRBYFLOAT', KEYS[6], ARGV[1] .. '|sum', ARGV[12])
  redis.call('HINCRBY', KEYS[6], ARGV[1] .. '|count', 1)
end
"""


def bucket(latency_s: float) -> str:
    """The histogram bucket (its upper bound, as stored) a latency falls in."""
    index = bisect.bisect_left(LATENCY_BUCKETS_S, latency_s)
    return INF if index == len(LATENCY_BUCKETS_S) else repr(LATENCY_BUCKETS_S[index])


def latency_args(created_at: float, delivered_at: float | None) -> tuple[str, str]:
    """``(bucket, seconds)`` for the finish script: the time from when a delivery was routed
    (its row created) to when it was delivered; ``("", "0")`` when either is unknown."""
    if not created_at or delivered_at is None:
        return "", "0"
    took_s = max(0.0, delivered_at - created_at)
    if not math.isfinite(took_s):
        return "", "0"
    return bucket(took_s), repr(took_s)


