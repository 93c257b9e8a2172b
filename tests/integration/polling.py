"""Waiting for something a real process does: poll a check until it holds, or fail saying what
did not happen and what was last seen. Every wait is bounded."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

DEFAULT_TIMEOUT_S = 60.0


def until(what: str, check: Callable[[], Any], timeout_s: float = DEFAULT_TIMEOUT_S,
          interval_s: float = 0.1) -> Any:
    """Call ``check`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s}s; last seen {last!r}")


async def until_async(what: str, check: Callable[[], Any],
                      timeout_s: float = DEFAULT_TIMEOUT_S, interval_s: float = 0.1) -> Any:
    """``until`` for async tests: ``check`` may be sync or return an awaitable; the event loop
    runs between tries."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s}s; last seen {last!r}")
