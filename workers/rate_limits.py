"""Celery rate limits of the delivery tasks, from each connector's ``rate_limit``.

Every delivery task (``workers.deliver.<connector>``) starts with its connector's default
(``BaseConnector.rate_limit``, a little under the vendor's documented limit). A worker bootstep
(``RateLimitStep``) reads ``integrations.<name>.rate_limit`` of every namespace each
``SYNC_EVERY_S`` and, when the limit a task should have differs from the one it has, applies it
with ``app.control.rate_limit`` to its own worker.

Celery enforces a rate limit per worker node (all its pool processes together): with N workers
a vendor sees up to N times the limit. Where namespaces configure a connector differently, the
strictest limit applies; custom connectors share one task, so the strictest limit among them
applies to all of them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from config_core.state import events, values
from config_core.state.keys import Namespace
from connectors import registry
from connectors.settings import rate_per_s
from workers import scheduling

log = logging.getLogger(__name__)

SYNC_EVERY_S = float(os.environ.get("APGCFG_RATE_LIMIT_SYNC_S", "10"))
"""How often a worker compares the configured rate limits with its tasks' own."""

Rate = str | float | int | None


def default(connector: str) -> str | None:
    """The declared default rate limit of a built-in connector (None for none)."""
    cls = registry.builtin_class(connector)
    return cls.rate_limit if cls is not None else None


def defaults() -> dict[str, Rate]:
    """Delivery task name → its rate limit when nothing is configured."""
    found: dict[str, Rate] = {scheduling.delivery_task(name): default(name)
                              for name in registry.BUILTIN}
    found[scheduling.delivery_task("custom")] = None
    return found


def configured(client: Any) -> dict[str, Rate]:
    """Delivery task name → the rate limit it should have now, from every namespace's config:
    the strictest among the configured connectors of that task (their ``rate_limit``, else
    their default)."""
    wanted: dict[str, list[Rate]] = {}
    for ns in events.namespaces(client):
        for name, config in _connector_configs(client, ns).items():
            limit = config.get("rate_limit")
            if limit is None:
                limit = default(name)
            wanted.setdefault(scheduling.delivery_task(name), []).append(limit)
    result = defaults()
    result.update({task: strictest(limits) for task, limits in wanted.items()})
    return result


def strictest(limits: list[Rate]) -> Rate:
    """The lowest of ``limits`` (None or 0: no limit; a bad value is ignored)."""
    best: Rate = None
    best_rate = float("inf")
    for limit in limits:
        try:
            per_s = rate_per_s(limit)
        except ValueError:
            continue
        if 0 < per_s < best_rate:
            best, best_rate = limit, per_s
    return best


def _connector_configs(client: Any, ns: Namespace) -> dict[str, dict[str, Any]]:
    custom = list(client.hkeys(values.registry_key(ns)))
    names = [name for name in [*registry.BUILTIN, *custom] if registry.receives_events(name)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hget(values.value_key(ns, f"integrations.{name}"), "value")
    found = {}
    for name, text in zip(names, pipe.execute(), strict=True):
        config = values.decode(text)
        if isinstance(config, dict):
            found[name] = config
    return found


def same(a: Rate, b: Rate) -> bool:
    """Whether two rate limits are the same limit (``"60/m"`` and ``"1/s"`` are)."""
    try:
        return abs(rate_per_s(a) - rate_per_s(b)) < 1e-9
    except ValueError:
        return a == b


def sync(app: Any, client: Any, hostname: str) -> dict[str, Rate]:
    """Apply the configured limits that differ from the tasks' own to worker ``hostname``;
    return the ones applied (a worker that did not answer is tried again next time)."""
    applied = {}
    for task, limit in configured(client).items():
        if task not in app.tasks or same(app.tasks[task].rate_limit, limit):
            continue
        replies = app.control.rate_limit(task, limit if limit is not None else 0,
                                         destination=[hostname], reply=True, timeout=2.0)
        if replies:
            log.info("rate limit of %s is now %s", task, limit or "off")
            applied[task] = limit
    return applied
