"""A TCP listener on 127.0.0.1 that hands each connection to ``serve`` in a thread of its own;
the base of the raw-socket fakes (a vendor that never answers, a proxy that loses replies)."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Self


class LoopbackListener:
    """Listens on an ephemeral loopback port from ``__enter__`` to ``__exit__``."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._listener.close()
        with self._lock:
            for conn in self._open:
                conn.close()

    def keep(self, conn: socket.socket) -> None:
        """Close ``conn`` when the listener stops."""
        with self._lock:
            self._open.append(conn)

    def serve(self, conn: socket.socket) -> None:
        """Handle one accepted connection (runs in the accepting thread: hand off if slow)."""
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.keep(conn)
            self.serve(conn)
