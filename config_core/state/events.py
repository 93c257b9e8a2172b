"""The outbox streams and the dispatched event documents.

Each namespace has one outbox stream per urgency: ``outbox:high``, ``outbox`` (medium, the
name a single outbox always had) and ``outbox:low``. Writers append an event to the stream of
its urgency (``values.WRITE_SCRIPT`` does, atomically with the change, see ``URGENCY_LUA``);
relays read them in consumer group ``dispatch``, high first (``workers.outbox_reader``), store
each routed event under ``event:<id>`` for the delivery tasks, and acknowledge the entry. A
replay is an outbox entry too (field ``r``, on the medium stream), so it goes through the same
relay.
"""

from __future__ import annotations

import json
from typing import Any

from redis.exceptions import ResponseError

from config_core import settings
from config_core.events import Event
from config_core.routing import DEFAULT_URGENCY, URGENCIES
from config_core.state.keys import NAMESPACES_KEY, Namespace

OUTBOX_PART = "outbox"
"""Key suffix of a namespace's medium outbox stream; the others add ``:high`` / ``:low``."""

OUTBOX_PARTS = {urgency: OUTBOX_PART if urgency == DEFAULT_URGENCY else f"{OUTBOX_PART}:{urgency}"
                for urgency in URGENCIES}
"""Key suffix of each urgency's outbox stream, most urgent first."""

DISPATCH_GROUP = "dispatch"
"""Consumer group of the outbox streams."""

EVENT_FIELD = "e"
"""Outbox entry field holding an event document."""

REPLAY_FIELD = "r"
"""Outbox entry field holding a replay request."""

DRAIN_FIELD = "d"
"""Outbox entry field naming a resumed connector whose waiting deliveries are to go out."""


def outbox_key(ns: Namespace, urgency: str = DEFAULT_URGENCY) -> str:
    """Stream of events of ``urgency`` waiting for a relay (medium: the historical name)."""
    return ns.key(OUTBOX_PARTS[urgency])


def outbox_keys(ns: Namespace) -> dict[str, str]:
    """Every outbox stream of ``ns`` by urgency, most urgent first."""
    return {urgency: ns.key(part) for urgency, part in OUTBOX_PARTS.items()}


def event_key(ns: Namespace, event_id: str) -> str:
    """The dispatched event document (JSON), kept for ``settings.EVENT_TTL_S``."""
    return ns.key("event", event_id)


def store(pipe: Any, ns: Namespace, event: Event) -> None:
    """Keep a routed event for its delivery tasks (``pipe``: a pipeline or a client)."""
    pipe.set(event_key(ns, event["event_id"]), json.dumps(event, allow_nan=False),
             ex=settings.EVENT_TTL_S)


def parse(text: str | None) -> Event | None:
    """A stored event document, or None when it expired."""
    return json.loads(text) if text else None


def load(client: Any, ns: Namespace, event_id: str) -> Event | None:
    """The stored event ``event_id`` (sync client)."""
    return parse(client.get(event_key(ns, event_id)))


def replay_request(event_id: str, connector: str | None) -> dict[str, str]:
    """The outbox entry asking relays to deliver ``event_id`` again."""
    return {REPLAY_FIELD: json.dumps({"replay": event_id, "connector": connector})}


def drain_request(connector: str) -> dict[str, str]:
    """The outbox entry asking relays to send a resumed connector's line out."""
    return {DRAIN_FIELD: connector}


def register(pipe: Any, ns: Namespace) -> None:
    """List ``ns`` among the namespaces relays read."""
    pipe.sadd(NAMESPACES_KEY, ns.name)


def namespaces(client: Any) -> list[Namespace]:
    """Every namespace that has had an outbox, sorted."""
    names: Any = client.smembers(NAMESPACES_KEY)
    return [Namespace.parse(name) for name in sorted(names)]


def ensure_group(client: Any, ns: Namespace) -> None:
    """Create the outbox streams and their consumer group where either is missing."""
    for stream in outbox_keys(ns).values():
        try:
            client.xgroup_create(stream, DISPATCH_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


MISSING_STREAM_ERRORS = ("NOGROUP", "UNBLOCKED")
"""Redis' answers when a stream or its group is gone: ``NOGROUP`` to a read, ``UNBLOCKED ...
the stream key no longer exists`` to a read that was waiting when it went."""


def is_missing_group(exc: BaseException) -> bool:
    """True when Redis says a stream or its group is gone (a restart without data, a DEL)."""
    return isinstance(exc, ResponseError) and str(exc).startswith(MISSING_STREAM_ERRORS)
