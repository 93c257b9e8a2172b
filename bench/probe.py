"""A FakeDiscord that tells an awaiting coroutine when the message for a key arrives."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.fakes.discord import FakeDiscord
from tests.fakes.server import RecordedRequest, Reply


def embed_key(body: Any) -> str | None:
    """The value of the ``Key`` field of the message's first embed, if any."""
    try:
        fields = body["embeds"][0]["fields"]
        return next(f["value"] for f in fields if f["name"] == "Key")
    except (KeyError, IndexError, TypeError, StopIteration):
        return None


class SignallingDiscord(FakeDiscord):
    """The loopback Discord fake; ``expect(key)`` resolves to that message's ``received_at``."""

    def __init__(self) -> None:
        super().__init__()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[float]]] = {}
        self._waiters_lock = threading.Lock()

    def expect(self, key: str) -> asyncio.Future[float]:
        """A future set to ``received_at`` of the first accepted message about ``key``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        with self._waiters_lock:
            self._waiters[key] = (loop, future)
        return future

    def handle(self, request: RecordedRequest) -> Reply:
        """Answer as Discord does, then wake whoever waits for this message's key."""
        reply = super().handle(request)
        key = embed_key(request.json) if request.method == "POST" else None
        if reply.status < 300 and key is not None:
            with self._waiters_lock:
                waiter = self._waiters.pop(key, None)
            if waiter is not None:
                loop, future = waiter
                loop.call_soon_threadsafe(_resolve, future, request.received_at)
        return reply


def _resolve(future: asyncio.Future[float], received_at: float) -> None:
    if not future.done():
        future.set_result(received_at)
