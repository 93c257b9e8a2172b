"""Relay liveness: each relay reports what it did and the backlog it saw, every sweep."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from config_core.state import events
from config_core.state.keys import ROOT, Namespace

RELAYS_KEY = f"{ROOT}:relays"
"""Hash: relay consumer name → its last report (JSON)."""

STALE_AFTER_S = 30.0
"""A relay whose last report is older than this is shown as not alive."""

FORGET_AFTER_S = 24 * 3600.0
"""Reports older than this (a worker long gone) are no longer shown."""


@dataclass
class Health:
    """What one relay reports about itself."""

    consumer: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    at: float = 0.0
    dispatched: int = 0
    poisoned: int = 0
    reconciled: int = 0
    errors: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    backlog: dict[str, Any] = field(default_factory=dict)

    def error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.last_error_at = time.time()

    def beat(self, backlog: dict[str, Any]) -> None:
        self.at = time.time()
        self.backlog = backlog


def backlog(client: Any, ns: Namespace) -> dict[str, int]:
    """Entries waiting in ``ns``'s outbox, and how many of them a relay has read but not
    dispatched yet."""
    pipe = client.pipeline(transaction=False)
    pipe.xlen(events.outbox_key(ns))
    pipe.xpending(events.outbox_key(ns), events.DISPATCH_GROUP)
    length, pending = pipe.execute()
    return {"outbox": int(length), "pending": int(pending["pending"] if pending else 0)}


def report(client: Any, health: Health) -> None:
    client.hset(RELAYS_KEY, health.consumer, json.dumps(asdict(health), allow_nan=False))


def reports(stored: dict[str, str], now: float | None = None) -> list[dict[str, Any]]:
    """Every relay's last report (``HGETALL RELAYS_KEY``), each with ``alive``; reports older
    than ``FORGET_AFTER_S`` are left out."""
    now = now or time.time()
    found = []
    for _, text in sorted(stored.items()):
        report_ = json.loads(text)
        age_s = now - float(report_.get("at") or 0)
        if age_s <= FORGET_AFTER_S:
            found.append({**report_, "alive": age_s <= STALE_AFTER_S})
    return found
