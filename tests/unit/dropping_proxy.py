"""A loopback TCP proxy in front of Redis that can lose a reply: the write happens, the answer
never reaches the client (as when a connection drops at the wrong moment)."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

from tests.conftest import REDIS_BASE
from tests.fakes.listener import LoopbackListener

CHUNK = 65536


class DroppingProxy(LoopbackListener):
    """Forwards 127.0.0.1:``port`` to a Redis server; ``drop_next_script_reply`` loses the
    answer to the next EVAL/EVALSHA, ``refuse`` makes it refuse new connections."""

    def __init__(self, upstream: str = REDIS_BASE) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._armed = threading.Event()
        self.refuse = threading.Event()
        self.dropped = 0

    def drop_next_script_reply(self) -> None:
        self._armed.set()

    def serve(self, client: socket.socket) -> None:
        if self.refuse.is_set():
            client.close()
            return
        server = socket.create_connection(self.upstream)
        self.keep(server)
        pending = threading.Event()
        threading.Thread(target=self._requests, args=(client, server, pending),
                         daemon=True).start()
        threading.Thread(target=self._replies, args=(server, client, pending),
                         daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket,
                  pending: threading.Event) -> None:
        while data := _recv(client):
            if self._armed.is_set() and (b"EVALSHA" in data.upper() or b"EVAL\r" in data):
                self._armed.clear()
                pending.set()
            server.sendall(data)
        server.close()

    def _replies(self, server: socket.socket, client: socket.socket,
                 pending: threading.Event) -> None:
        while data := _recv(server):
            if pending.is_set():  # the script ran; its answer is lost with the connection
                self.dropped += 1
                _close(client)
                _close(server)
                return
            client.sendall(data)
        client.close()


def _close(conn: socket.socket) -> None:
    """Close at once, waking a thread blocked reading it (the peer sees the connection end)."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()


def _recv(conn: socket.socket) -> bytes:
    try:
        return conn.recv(CHUNK)
    except OSError:
        return b""
