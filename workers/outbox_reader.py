"""The order a relay reads the outbox streams in: every ``high`` entry before any ``medium``
one, every ``medium`` entry before any ``low`` one, in bounded batches.

Each namespace has one outbox stream per urgency (``config_core.state.events``). A read takes
one batch from the most urgent level that has entries (in every namespace), so whatever is
being dispatched, a high change waits at most for the one batch in hand: batches of the lower
levels are small (``READ_BATCH``). Only when every stream is empty does the reader block, on
all of them at once, until something arrives.

A relay may read only some levels (``APGCFG_RELAY_URGENCIES``, e.g. ``high`` for the relay of
a worker that consumes the high queue alone); every level must be read by at least one relay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from config_core.errors import ConfigError
from config_core.routing import URGENCIES
from config_core.state import events
from config_core.state.keys import Namespace

RELAY_URGENCIES_ENV = "APGCFG_RELAY_URGENCIES"
"""Comma-separated urgencies this worker's relay reads (default: all of them)."""

READ_BATCH = {"high": 100, "medium": 25, "low": 10}
"""Entries read per stream and call, per urgency: a high change waits at most for one batch
of a lower level to be dispatched."""

BLOCK_COUNT = min(READ_BATCH.values())
"""Entries per stream taken by the blocking read (the ordered reads then take the rest)."""


@dataclass(frozen=True)
class Batch:
    """Entries read from one namespace's outbox stream of one urgency."""

    ns: Namespace
    urgency: str
    entries: list[Any]


def relay_urgencies(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """The urgencies named by ``APGCFG_RELAY_URGENCIES``, most urgent first; all when unset.

    ``ConfigError`` naming the variable for an unknown or empty list.
    """
    text = environ.get(RELAY_URGENCIES_ENV, "").strip()
    if not text:
        return URGENCIES
    names = {name.strip() for name in text.split(",")}
    unknown = sorted(names - set(URGENCIES))
    if unknown or not names - {""}:
        raise ConfigError(f"{RELAY_URGENCIES_ENV} must list urgencies from {list(URGENCIES)} "
                          f"separated by commas, got {text!r}")
    return tuple(u for u in URGENCIES if u in names)


class OutboxReader:
    """Reads a consumer's share of the outbox streams, most urgent first."""

    def __init__(self, client: Any, consumer: str, urgencies: Sequence[str] = URGENCIES) -> None:
        self.client = client
        self.consumer = consumer
        self.urgencies = tuple(u for u in URGENCIES if u in urgencies)
        if not self.urgencies:
            raise ConfigError(f"a relay must read at least one urgency of {list(URGENCIES)}")

    def read(self, namespaces: Sequence[Namespace], *, block_ms: int | None = None,
             own_pending: bool = False) -> list[Batch]:
        """The next batches to dispatch: from the most urgent level that has entries.

        ``own_pending``: this consumer's entries read before but not acknowledged (after a
        failure), never blocking. Otherwise new entries; with ``block_ms``, wait that long for
        one when every stream is empty.
        """
        start = "0" if own_pending else ">"
        for urgency in self.urgencies:
            found = self._read(namespaces, (urgency,), start, READ_BATCH[urgency], None)
            if found:
                return found
        if own_pending or not block_ms:
            return []
        return self._read(namespaces, self.urgencies, ">", BLOCK_COUNT, block_ms)

    def _read(self, namespaces: Sequence[Namespace], urgencies: Sequence[str], start: str,
              count: int, block_ms: int | None) -> list[Batch]:
        where = {events.outbox_key(ns, u): (ns, u) for u in urgencies for ns in namespaces}
        streams: dict[Any, Any] = dict.fromkeys(where, start)
        replies: Any = self.client.xreadgroup(events.DISPATCH_GROUP, self.consumer, streams,
                                              count=count, block=block_ms)
        found = [Batch(*where[stream], entries) for stream, entries in replies or [] if entries]
        rank = {urgency: i for i, urgency in enumerate(URGENCIES)}
        return sorted(found, key=lambda batch: rank[batch.urgency])
