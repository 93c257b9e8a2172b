"""An ``HTTPAdapter`` whose connections check every resolved address before connecting.

Each new connection resolves its host once, refuses it when any address is internal and not
allowed (``connectors.egress``), then connects to the checked addresses themselves, so a host
name cannot resolve to a public address for the check and to a private one for the connect
(DNS rebinding). Through an HTTP proxy, the address checked is the proxy's.
"""

from __future__ import annotations

import socket
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from connectors import egress
from connectors.errors import BlockedDestination


def checked_addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, all allowed; ``BlockedDestination`` otherwise."""
    found = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in found))
    for address in addresses:
        ip = egress.literal_address(address)
        problem = egress.refusal(host, ip) if ip is not None else None
        if problem:
            raise BlockedDestination(f"connection to {egress.normalize_host(host)} refused: it "
                                     f"{problem}")
    return addresses


class _Guarded(HTTPConnection):
    """Connects only to addresses that ``checked_addresses`` let through."""

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        try:
            addresses = checked_addresses(name, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        failure: ConnectTimeoutError | None = None
        for address in addresses:
            self._dns_host = address
            try:
                return super()._new_conn()
            except ConnectTimeoutError as exc:  # refused, unreachable or timed out: try the next
                failure = exc
            finally:
                self._dns_host = name
        raise failure or NewConnectionError(self, f"{self.host} resolved to no address")


class GuardedHTTPConnection(_Guarded):
    """Plain HTTP, checked."""


class GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    """HTTPS, checked (TLS still verifies the host name, not the address)."""


class GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


GUARDED_POOLS = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
"""urllib3 pool classes by scheme, for direct connections and for the ones through a proxy."""


class GuardedAdapter(HTTPAdapter):
    """``HTTPAdapter`` whose pools (direct or via an HTTP proxy) use guarded connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(GUARDED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(GUARDED_POOLS)
        return manager
