"""Where vendor calls may go: public addresses, and internal ones only if the operator allows.

A connector URL is user input, and a worker runs inside the deployment's network: without this
policy a config could make it call the cloud metadata service (169.254.169.254), a database
admin port, or anything else only the worker can reach (server-side request forgery).

Refused unless allowed: loopback, link-local (incl. the metadata service), private (10/8,
172.16/12, 192.168/16, fc00::/7), shared (100.64/10), unspecified, multicast, reserved and
documentation ranges, and IPv6 forms that embed such an IPv4 address (``::ffff:a.b.c.d``,
6to4, NAT64). The allow-list is ``APGCFG_ALLOWED_NETWORKS``: comma-separated CIDRs and host
names (``127.0.0.0/8,::1/128,jenkins.corp.internal``), read on every check so that the
service (validation) and workers (sending) see the same, current setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from functools import lru_cache

from config_core.errors import ConfigError

ALLOWED_NETWORKS_ENV = "APGCFG_ALLOWED_NETWORKS"
"""Environment variable holding the allow-list (empty or unset: public addresses only)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOCALHOST_NAMES = frozenset({"localhost", "localhost.localdomain"})
"""Names that always mean this machine, refused at config time like 127.0.0.1."""

NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix: its last 32 bits are an IPv4 address."""

_LABEL = r"[a-z0-9_][a-z0-9_-]{0,62}"
_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


@dataclass(frozen=True)
class AllowList:
    """The operator's exceptions: networks, and host names trusted whatever they resolve to."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    def allows_host(self, host: str) -> bool:
        """True when ``host`` is listed by name."""
        return normalize_host(host) in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        """True when ``address`` (or the IPv4 address it embeds) is in a listed network."""
        candidates = [address, *([embedded] if (embedded := embedded_ipv4(address)) else [])]
        return any(candidate in network for candidate in candidates for network in self.networks
                   if candidate.version == network.version)


def allow_list() -> AllowList:
    """The allow-list in force now (``APGCFG_ALLOWED_NETWORKS``)."""
    return _parse(os.environ.get(ALLOWED_NETWORKS_ENV, ""))


@lru_cache(maxsize=8)
def _parse(text: str) -> AllowList:
    networks: list[Network] = []
    hosts: set[str] = set()
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        host = normalize_host(entry)
        if "/" in entry or not _HOST_RE.match(host):
            raise ConfigError(f"{ALLOWED_NETWORKS_ENV} entry {entry!r} is neither a network "
                              "(CIDR such as 10.0.0.0/8) nor a host name")
        hosts.add(host)
    return AllowList(tuple(networks), frozenset(hosts))


def normalize_host(host: str) -> str:
    """``host`` lowercased, without brackets or a trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), or None."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def internal_kind(address: IPAddress) -> str | None:
    """What makes ``address`` internal ("loopback", "private", ...), or None when public."""
    embedded = embedded_ipv4(address)
    if embedded is not None:
        return internal_kind(embedded)
    for kind in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    if not address.is_global:
        return "non-public"
    return None


def literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address when it is one (brackets and zone id ignored), else None."""
    try:
        return ipaddress.ip_address(normalize_host(host).split("%")[0])
    except ValueError:
        return None


def refusal(host: str, address: IPAddress | None = None) -> str | None:
    """Why a call to ``host`` (connecting to ``address``) is refused, or None when allowed.

    Without ``address`` only what the name alone tells is judged: a literal IP, or localhost.
    The text names the host and how to allow it, never a URL's path.
    """
    allowed = allow_list()
    if allowed.allows_host(host):
        return None
    if address is None:
        address = literal_address(host)
        if address is None and normalize_host(host) in LOCALHOST_NAMES:
            address = ipaddress.IPv4Address("127.0.0.1")
    if address is None or allowed.allows_address(address):
        return None
    kind = internal_kind(address)
    if kind is None:
        return None
    shown = normalize_host(host)
    where = shown if shown == str(address) else f"{shown} ({address})"
    return (f"points at {where}, a {kind} address; vendor calls go to public addresses only "
            f"unless {ALLOWED_NETWORKS_ENV} allows it (a CIDR or the host name)")


def is_internal_allowed(host: str) -> bool:
    """True when ``host`` is internal by name or literal address and the allow-list permits it.

    Plain ``http://`` is accepted only for such hosts (test fakes, on-premise vendors).
    """
    allowed = allow_list()
    if allowed.allows_host(host):
        return True
    address = literal_address(host)
    if address is None and normalize_host(host) in LOCALHOST_NAMES:
        address = ipaddress.IPv4Address("127.0.0.1")
    return (address is not None and internal_kind(address) is not None
            and allowed.allows_address(address))
