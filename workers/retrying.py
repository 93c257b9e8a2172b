"""When to try a failed delivery again, and when to give up.

A failed attempt waits ``BASE_S × 2ⁿ`` seconds (at most ``STEP_MAX_S``), half of it fixed and
half random, and never less than the vendor's ``Retry-After``; no wait is longer than
``connectors.http.MAX_VENDOR_WAIT_S``, whatever the vendor says. A delivery is given up
(``dead``) once its first failure is ``window_s`` old (default one hour), or after
``max_retries`` retries when that is set. Both come from ``integrations.retries``, per
connector if wanted:

    {"window_s": 3600, "max_retries": null, "connectors": {"slack": {"window_s": 600}}}

``integrations.batching.max_retries`` (older setting) still sets ``max_retries``.

With the defaults the schedule is about 2, 4, 8, ... 512 s, then every 600 s: 14 retries
across the hour. Waits past the Celery countdown limit are parked in Redis (``scheduling``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from config_core.state.ledger import LedgerRow
from connectors.http import bounded_wait

BASE_S = 2.0
"""First wait after a failure."""

STEP_MAX_S = 600.0
"""Longest wait between two attempts of the backoff itself."""

DEFAULT_WINDOW_S = 3600.0
"""A delivery keeps being retried until its first failure is this old."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long one connector's failed deliveries are retried."""

    window_s: float = DEFAULT_WINDOW_S
    max_retries: int | None = None

    @classmethod
    def of(cls, connector: str, retries: dict[str, Any], batching: dict[str, Any]
           ) -> RetryPolicy:
        """The policy of ``connector`` from ``integrations.retries`` / ``.batching``."""
        own = (retries.get("connectors") or {}).get(connector) or {}
        window = own.get("window_s", retries.get("window_s", DEFAULT_WINDOW_S))
        limit = own.get("max_retries", retries.get("max_retries", batching.get("max_retries")))
        return cls(float(window), None if limit is None else int(limit))

    def gives_up(self, row: LedgerRow, now: float | None = None) -> bool:
        """True when ``row``'s latest failure should be its last."""
        if self.max_retries is not None and row.attempts > self.max_retries:
            return True
        first = row.first_failure_at
        return first is not None and (now or time.time()) - first >= self.window_s


def backoff_s(attempts: int, retry_after_s: float | None) -> float:
    """The wait after failed attempt number ``attempts`` (1 for the first)."""
    step = min(STEP_MAX_S, BASE_S * 2 ** min(max(attempts - 1, 0), 30))
    wait = step / 2 + random.uniform(0, step / 2)
    return cap(max(wait, retry_after_s or 0.0))


def cap(wait_s: float | None) -> float:
    """``wait_s`` as a finite number of seconds in [0, MAX_VENDOR_WAIT_S] (NaN counts as 0)."""
    return bounded_wait(wait_s) or 0.0
