"""Redis key layout: every key of a tenant's environment starts with ``apgcfg:{tenant}:{env}:``."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "apgcfg"
"""Prefix of every key this project writes."""

NAMESPACES_KEY = f"{ROOT}:namespaces"
"""Set of ``tenant:environment`` pairs that have an outbox; the relay reads them all."""

PARKED_KEY = f"{ROOT}:parked"
"""Sorted set of deliveries waiting longer than a Celery countdown may (score: due epoch)."""

DETAIL_SUFFIX = "#detail"
"""Ledger hash field ``<connector>#detail``: notes added after a delivery ended."""

DISPATCH_GROUP = "dispatch"
"""Consumer group of the outbox streams."""


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

    def value(self, key: str) -> str:
        """Hash with fields value (JSON), masked (JSON) and version."""
        return f"{self.prefix}cfg:{key}"

    def history(self, key: str) -> str:
        """List of history entries, newest first."""
        return f"{self.prefix}history:{key}"

    def notes(self, key: str) -> str:
        """Hash: version → JSON list of notes added after the change (e.g. a build result)."""
        return f"{self.prefix}notes:{key}"

    @property
    def roles(self) -> str:
        """Hash: lower-case email → role (read, write, admin), from the identity directory."""
        return f"{self.prefix}roles"

    @property
    def index(self) -> str:
        """Sorted set of every key that has a value (for prefix listing)."""
        return f"{self.prefix}index"

    @property
    def outbox(self) -> str:
        """Stream of events waiting for the relay."""
        return f"{self.prefix}outbox"

    def event(self, event_id: str) -> str:
        """The dispatched event document (JSON)."""
        return f"{self.prefix}event:{event_id}"

    def deliveries(self, event_id: str) -> str:
        """Hash: connector name → delivery ledger record (JSON)."""
        return f"{self.prefix}deliveries:{event_id}"

    @property
    def dead(self) -> str:
        """Sorted set of ``event_id:connector`` deliveries that went dead (score: when)."""
        return f"{self.prefix}dead"

    def dedupe(self, event_id: str) -> str:
        """Hash: ``connector:step`` → what a connector created for this event (no duplicates)."""
        return f"{self.prefix}dedupe:{event_id}"

    @property
    def triggered(self) -> str:
        """Hash: ``connector:key`` → newest version a connector has triggered (stale guard)."""
        return f"{self.prefix}triggered"

    @property
    def connectors(self) -> str:
        """Hash: custom connector name → importable class path."""
        return f"{self.prefix}connectors"
