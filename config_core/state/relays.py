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
    urgencies: list[str] = field(default_factory=list)
    """The outbox urgencies this relay reads."""
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


def backlog(client: Any, ns: Namespace) -> dict[str, Any]:
    """Entries waiting in ``ns``'s outbox streams, how many of them a relay has read but not
    dispatched yet, and the waiting entries per urgency."""
    streams = events.outbox_keys(ns)
    pipe = client.pipeline(transaction=False)
    for stream in streams.values():
        pipe.xlen(stream)
        pipe.xpending(stream, events.DISPATCH_GROUP)
    replies = pipe.execute(raise_on_error=False)
    lengths = {urgency: _int(replies[2 * i]) for i, urgency in enumerate(streams)}
    pending = sum(_int((reply or {}).get("pending") if isinstance(reply, dict) else 0)
                  for reply in replies[1::2])
    return {"outbox": sum(lengths.values()), "pending": pending, "by_urgency": lengths}


def _int(reply: Any) -> int:
    """A count from a pipeline reply; 0 for an error (a stream or group not there yet)."""
    return 0 if isinstance(reply, Exception) or reply is None else int(reply)


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
