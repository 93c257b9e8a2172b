"""A loopback server that answers every request with one scripted reply, and a traffic guard.

For tests of the shared HTTP client itself (redirects, refused destinations, vendor waits),
where no vendor's contract matters.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fakes.server import RecordedRequest, Reply, ServerBase


class ScriptedServer(ServerBase):
    """Answers every request with ``reply`` and records it."""

    def __init__(self, reply: Reply | None = None) -> None:
        super().__init__()
        self.reply = reply or Reply(200, b"{}", {"Content-Type": "application/json"})

    def handle(self, request: RecordedRequest) -> Reply:
        """The scripted reply, whatever was asked."""
        return self.reply

    def webhook_key(self, url_or_path: str) -> str | None:
        """Every path is its own key."""
        return urlsplit(url_or_path).path or "/"

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """A bare status."""
        return Reply(status)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A started ``ScriptedServer`` answering 200 until the test sets ``reply``."""
    with ScriptedServer() as server:
        yield server


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = str(address[0]).split("%")[0]
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # unix sockets and the like stay on this machine


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a test loudly, before any packet leaves, if code under test connects off-machine."""
    real_connect = socket.socket.connect

    def guarded(sock: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            raise AssertionError(f"test tried to connect to {address!r}: not loopback")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
