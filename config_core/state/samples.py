"""Performance samples waiting to be sent to New Relic: a capped list per namespace."""

from __future__ import annotations

import json
from typing import Any

from config_core.state.keys import Namespace

MAX_SAMPLES = 10_000
"""Samples kept per namespace while New Relic is unreachable (older ones are dropped)."""


def samples_key(ns: Namespace) -> str:
    """List of samples (JSON), newest first."""
    return ns.key("perf")


def push(client: Any, ns: Namespace, samples: list[dict[str, Any]]) -> None:
    """Keep samples (``client`` may be a pipeline)."""
    if samples:
        client.lpush(samples_key(ns), *(json.dumps(s, allow_nan=False) for s in samples))
        client.ltrim(samples_key(ns), 0, MAX_SAMPLES - 1)


def take(client: Any, ns: Namespace, count: int) -> list[str]:
    """Up to ``count`` of the oldest samples, removed (JSON texts, oldest first)."""
    texts: Any = client.rpop(samples_key(ns), count)
    return list(texts or [])


def put_back(client: Any, ns: Namespace, texts: list[str]) -> None:
    """Return samples ``take`` removed (they could not be sent), oldest last as before."""
    if texts:
        client.rpush(samples_key(ns), *reversed(texts))
