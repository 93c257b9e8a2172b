"""BaseConnector: what every connector, built in or user-written, looks like."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from config_core.masking import MASK, redact, secret_strings
from connectors.context import DeliveryContext, FollowUp, MemoryContext
from connectors.errors import ConnectorError, Misconfigured, TransportError, Unavailable
from connectors.settings import (
    ENV_REF_RE,
    RATE_LIMIT,
    Setting,
    missing_required,
    validate_config,
    with_defaults,
)


class BaseConnector:
    """Delivers configuration events to one external system.

    Subclasses declare ``settings`` and implement ``send_notification(event)``; ``health_check``
    and ``sync_data`` are optional. Each may be ``async def`` or plain ``def``.
    """

    name: ClassVar[str] = ""
    settings: ClassVar[tuple[Setting, ...]] = ()
    receives_events: ClassVar[bool] = True
    """False for connectors that are only read from (identity providers): never routed to."""

    batched: ClassVar[bool] = False
    """True for connectors that always send in batches (Splunk HEC): deliveries are buffered
    in Redis and flushed by ``batch_size`` / ``flush_interval`` (see ``batch_policy``)."""

    rate_limit: ClassVar[str | None] = None
    """Default rate limit of this connector's deliveries, per worker, in Celery's format
    (``"50/m"``), set a little under the vendor's documented limit; None for none. The
    ``rate_limit`` setting (``integrations.<name>.rate_limit``) overrides it."""

    rate_limit_source: ClassVar[str] = ""
    """The vendor's documented limit the default comes from (shown in docs/connectors.md)."""

    retry_unknown_outcome: ClassVar[bool] = True
    """Whether a delivery whose earlier attempt died while sending (outcome unknown) is sent
    again. True suits connectors that look up what an earlier attempt made (``create_once``)
    or whose vendor ignores duplicates; chat connectors set False: a message is never posted
    twice, the delivery goes dead with the reason instead (replay sends it)."""

    health_check_probes_vendor: ClassVar[bool | None] = None
    """Whether ``health_check`` asks the vendor (True), or only looks at the config (False);
    None: True when the class overrides ``health_check``. A paused connector is resumed by a
    passing check only when it asks the vendor (see ``probes_vendor``)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = with_defaults(self.settings, dict(config))
        self.context: DeliveryContext = MemoryContext()

    @classmethod
    def validate_config(cls, config: Any, *, partial: bool = False) -> dict[str, Any]:
        """Check a config against this connector's declared settings and the ``rate_limit``
        every connector accepts (``ConfigError`` if bad)."""
        where = f"integrations.{cls.name or 'connector'}"
        if not isinstance(config, dict) or "rate_limit" not in config:
            return validate_config(where, cls.settings, config, partial=partial)
        own = {k: v for k, v in config.items() if k != "rate_limit"}
        if config["rate_limit"] is not None:
            RATE_LIMIT.validate(where, config["rate_limit"])
        checked = validate_config(where, cls.settings, own, partial=partial)
        return {**checked, "rate_limit": config["rate_limit"]}

    @classmethod
    def secret_fields(cls) -> frozenset[str]:
        """Names of settings declared secret."""
        return frozenset(s.name for s in cls.settings if s.secret)

    @classmethod
    def field_aliases(cls) -> dict[str, str]:
        """Alias → declared setting name, for field keys (``integrations.<name>.<alias>``)."""
        return {alias: s.name for s in cls.settings for alias in s.aliases}

    @classmethod
    def from_stored(cls, name: str, config: dict[str, Any]) -> BaseConnector:
        """Build from a stored config: check completeness, resolve ``${env:NAME}`` references."""
        missing = missing_required(cls.settings, config)
        if missing:
            raise Misconfigured(f"integrations.{name} is missing required setting(s) {missing}")
        return cls(resolve_env_refs(name, config))

    @classmethod
    def probes_vendor(cls) -> bool:
        """Whether a passing ``health_check`` is evidence that the vendor takes deliveries."""
        if cls.health_check_probes_vendor is not None:
            return cls.health_check_probes_vendor
        return cls.health_check is not BaseConnector.health_check

    def wants(self, event: dict[str, Any]) -> bool:
        """Whether this connector takes ``event`` at all (a filter applied after routing)."""
        return True

    def send_notification(self, event: dict[str, Any]) -> Any:
        """Deliver ``event``; raise a ``ConnectorError`` subclass on failure."""
        raise NotImplementedError(f"{type(self).__name__} must implement send_notification")

    def health_check(self) -> bool:
        """True when the vendor is reachable with this config."""
        return True

    def batch_policy(self, event: dict[str, Any], batching: dict[str, Any]
                     ) -> tuple[int, float] | None:
        """``(batch_size, flush_interval_s)`` to buffer ``event``, or None to send it now.

        ``batching`` is ``integrations.batching`` (empty when unset). Batched connectors read
        their own settings; others send each event on its own.
        """
        return None

    def prepare(self, event: dict[str, Any]) -> Any:
        """One event, ready to be part of a batch (a JSON value); runs in a chord's header."""
        return event

    def send_batch(self, items: list[Any]) -> Any:
        """Send prepared items as few requests as the vendor allows; runs as the chord's body.

        Raise ``PartialFailure`` when the vendor accepted only the items before one it refused.
        """
        raise NotImplementedError(f"{type(self).__name__} does not send batches")

    def follow_up(self, state: dict[str, Any]) -> FollowUp | None:
        """Continue work scheduled with ``context.follow_up``; return the next step or None."""
        return None

    def follow_up_failed(self, state: dict[str, Any], error: str) -> None:
        """A follow-up gave up (its steps kept failing): record the outcome it could not see,
        e.g. a build result of UNKNOWN. ``error`` says why (already without secrets)."""

    def create_once(self, step: str, create: Callable[[], dict[str, Any]],
                    find: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:
        """Create a vendor object for this event at most once, across retries and redeliveries.

        ``create`` makes the object and returns a reference to it (ids, URL); ``find`` looks for
        one an earlier attempt may have made (by the event's fingerprint). ``find`` runs only
        when an earlier attempt's outcome is unknown: it sent the request and then died, timed
        out waiting for the answer, or got a 5xx (which some vendors send after creating).
        """
        record = self.context.created(step)
        if record and record["state"] == "created":
            return dict(record["ref"] or {})
        if record and record["state"] == "creating":
            found = find()
            if found is not None:
                self.context.mark(step, "created", found)
                return found
        self.context.mark(step, "creating")
        try:
            ref = create()
        except (TransportError, Unavailable):
            raise  # the vendor may have made it (no answer, or a 5xx): the next attempt looks
        except ConnectorError:
            self.context.forget(step)  # the vendor answered no: nothing was created
            raise
        self.context.mark(step, "created", ref)
        return ref

    def sync_data(self) -> dict[str, Any]:
        """Pull data from the vendor (identity connectors); nothing by default."""
        return {}

    def secrets(self) -> set[str]:
        """Every secret string in this connector's config, for scrubbing error text."""
        return secret_strings(self.config, self.secret_fields())

    def redact(self, text: str) -> str:
        """``text`` with this connector's secrets replaced by ``***``."""
        return redact(text, self.secrets())

    def __repr__(self) -> str:
        shown = {k: (MASK if k in self.secret_fields() else v) for k, v in self.config.items()}
        return self.redact(f"<{type(self).__name__} {shown}>")


def resolve_env_refs(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Replace ``${env:NAME}`` strings (at any depth) with the environment's values."""

    def resolve(value: Any, where: str) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, str):
            match = ENV_REF_RE.match(value)
            if match:
                if match.group(1) not in os.environ:
                    raise Misconfigured(f"{where} refers to unset environment variable "
                                        f"{match.group(1)}")
                return os.environ[match.group(1)]
        return value

    return resolve(config, f"integrations.{name}")


def call(method: Any, *args: Any) -> Any:
    """Call a connector method that may be sync or async, from sync code."""
    result = method(*args)
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def acall(method: Any, *args: Any) -> Any:
    """Call a sync-or-async connector method from async code (sync ones run in a thread)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    result = await asyncio.to_thread(method, *args)
    if inspect.isawaitable(result):
        return await result
    return result


class AsyncConnector:
    """What ``ConfigService.get_connector`` returns: every method awaitable, sync or not."""

    def __init__(self, connector: BaseConnector) -> None:
        self.connector = connector

    async def health_check(self) -> bool:
        return bool(await acall(self.connector.health_check))

    async def send_notification(self, event: dict[str, Any]) -> Any:
        return await acall(self.connector.send_notification, event)

    async def sync_data(self) -> Any:
        return await acall(self.connector.sync_data)

    @property
    def config(self) -> dict[str, Any]:
        return self.connector.config

    def __repr__(self) -> str:
        return repr(self.connector)


def setting_names(settings: Iterable[Setting]) -> list[str]:
    """The declared names, in order."""
    return [s.name for s in settings]
