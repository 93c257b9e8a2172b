"""Naming of Redis keys: every key of a tenant's environment starts with ``apgcfg:{tenant}:{env}:``.

This module names namespaces and the few keys shared by all of them; each structure (values,
events, ledger, ...) builds its own keys from a ``Namespace`` in its own module.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "apgcfg"
"""Prefix of every key this project writes."""

NAMESPACES_KEY = f"{ROOT}:namespaces"
"""Set of ``tenant:environment`` pairs that have an outbox; relays read them all."""


@dataclass(frozen=True)
class Namespace:
    """Where one tenant's environment lives in Redis."""

    tenant: str
    environment: str

    @classmethod
    def parse(cls, name: str) -> Namespace:
        """From ``tenant:environment``."""
        tenant, _, environment = name.partition(":")
        return cls(tenant, environment)

    @property
    def name(self) -> str:
        return f"{self.tenant}:{self.environment}"

    @property
    def prefix(self) -> str:
        return f"{ROOT}:{self.tenant}:{self.environment}:"

    def key(self, *parts: str) -> str:
        """``apgcfg:{tenant}:{env}:part1:part2...``."""
        return self.prefix + ":".join(parts)
