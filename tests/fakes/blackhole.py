"""A vendor that never answers: it accepts connections and reads, and says nothing."""

from __future__ import annotations

import socket

from tests.fakes.listener import LoopbackListener


class BlackHole(LoopbackListener):
    """Counts connections and holds each open, unanswered, until it stops."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    def serve(self, conn: socket.socket) -> None:
        self.connections += 1
