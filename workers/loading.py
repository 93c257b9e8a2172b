"""What a task loads before it acts: the event, its ledger row, the connector as configured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config_core.errors import ConfigError
from config_core.events import Event
from config_core.state import breakers, events, ledger, values
from config_core.state import health as health_state
from config_core.state.breakers import Breaker
from config_core.state.keys import Namespace
from connectors import registry
from connectors.base import BaseConnector

PERFORMANCE_PROVIDER = "newrelic"
"""The connector that receives performance samples, when it is configured."""


@dataclass
class Loaded:
    """One delivery's inputs, read in one round trip."""

    event: Event | None
    row_text: str | None
    config: dict[str, Any] | None
    class_path: str | None
    batching: dict[str, Any]
    retries: dict[str, Any]
    breaker: Breaker
    timed: bool = False
    record: dict[str, str] | None = None
    """The connector's health record (its breaker, streak and pause)."""
    health: dict[str, Any] | None = None
    """``integrations.health`` (empty when unset)."""
    line: bool = False
    """Whether deliveries wait in the connector's line."""


def load(client: Any, ns: Namespace, event_id: str, name: str) -> Loaded:
    """Read the event, its ledger row for ``name`` and ``name``'s config at once."""
    pipe = client.pipeline(transaction=False)
    pipe.get(events.event_key(ns, event_id))
    pipe.hget(ledger.rows_key(ns, event_id), name)
    pipe.hget(values.value_key(ns, f"integrations.{name}"), "value")
    pipe.hget(values.registry_key(ns), name)
    pipe.hget(values.value_key(ns, "integrations.batching"), "value")
    pipe.hget(values.value_key(ns, "integrations.retries"), "value")
    pipe.hgetall(breakers.breaker_key(ns, name))
    pipe.hexists(values.value_key(ns, f"integrations.{PERFORMANCE_PROVIDER}"), "value")
    pipe.hget(values.value_key(ns, "integrations.health"), "value")
    pipe.exists(health_state.line_key(ns, name))
    (event, row, config, class_path, batching, retries, breaker, timed, health,
     line) = pipe.execute()
    return Loaded(
        event=events.parse(event),
        row_text=row,
        config=values.decode(config),
        class_path=class_path,
        batching=values.decode(batching) or {},
        retries=values.decode(retries) or {},
        breaker=Breaker.parse(breaker),
        timed=bool(timed),
        record=breaker or {},
        health=values.decode(health) or {},
        line=bool(line),
    )


def build(name: str, loaded: Loaded, need_event: bool = True) -> BaseConnector:
    """Connector ``name`` from its stored config (``ConfigError`` when that cannot be done).

    The class comes from ``registry.load``: one registered in this process first (a script's
    ``__main__`` class in eager mode), else imported by its stored path.
    """
    if need_event and loaded.event is None:
        raise ConfigError("the event has expired or was never dispatched")
    if loaded.config is None:
        raise ConfigError(f"integrations.{name} is not configured any more")
    path = registry.BUILTIN.get(name) or loaded.class_path
    if path is None:
        raise ConfigError(f"no connector class is registered for {name!r}")
    return registry.load(path).from_stored(name, loaded.config)


def build_connector(client: Any, ns: Namespace, name: str) -> BaseConnector:
    """Connector ``name`` as configured now (for work not tied to one event)."""
    return build(name, load(client, ns, "-", name), need_event=False)
