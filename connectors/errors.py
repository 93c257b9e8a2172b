"""Connector failures, typed so the delivery task knows whether to retry.

    ApgConfigError                      (config_core.errors)
    └── ConnectorError
        ├── RetryableError              try again later; ``retry_after_s`` is the least wait
        │   ├── RateLimited             the vendor said 429 (or its own busy code)
        │   ├── Unavailable             5xx, or the vendor said it is overloaded
        │   └── TransportError          connection refused or reset, timeout, TLS failure
        ├── PartialFailure              a batch was accepted up to one refused item
        ├── Skipped                     the connector chose not to act (filtered, stale)
        └── PermanentError              retrying cannot help; the delivery goes dead at once
            ├── AuthError               401 / 403: a bad or revoked credential
            ├── Rejected                the vendor refused the request (400, 404, 422, 3xx, ...)
            ├── BlockedDestination      the URL leads to an internal address not allowed
            └── Misconfigured           the stored connector config cannot be used

Messages never contain secrets: they are redacted where they are raised.
"""

from __future__ import annotations

from config_core.errors import ApgConfigError, ConfigError


class ConnectorError(ApgConfigError):
    """A delivery to a vendor failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableError(ConnectorError):
    """A failure that may pass; ``retry_after_s`` is the earliest sensible retry, if known."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after_s = retry_after_s


class RateLimited(RetryableError):
    """The vendor is rate limiting us (HTTP 429 or its own equivalent)."""


RateLimitError = RateLimited
"""The guide's name for ``RateLimited`` (its backoff example catches ``RateLimitError``)."""


class Unavailable(RetryableError):
    """The vendor answered with a server error or said it is unavailable."""


class TransportError(RetryableError):
    """The request did not complete: connection, TLS or timeout failure."""


class PartialFailure(ConnectorError):
    """A batch was cut short: items before ``failed_index`` were accepted, that one refused.

    ``error`` says why the item at ``failed_index`` was refused (permanent: it is dead); the
    items after it were not processed and are sent again.
    """

    def __init__(self, message: str, *, failed_index: int, error: ConnectorError) -> None:
        super().__init__(message)
        self.failed_index = failed_index
        self.error = error


class Skipped(ConnectorError):
    """The connector decided this event needs nothing from it; the message says why."""


class PermanentError(ConnectorError):
    """A failure that no retry can fix."""


class AuthError(PermanentError):
    """The vendor refused our credentials (401 or 403)."""


class Rejected(PermanentError):
    """The vendor refused the request itself (4xx other than 401, 403, 429)."""


class BlockedDestination(PermanentError):
    """The call would reach an internal address that ``APGCFG_ALLOWED_NETWORKS`` does not allow."""


class Misconfigured(PermanentError):
    """The connector's stored configuration is incomplete or unusable."""


KINDS: tuple[tuple[type[Exception], str], ...] = (
    (RateLimited, "rate_limited"), (Unavailable, "unavailable"), (TransportError, "transport"),
    (AuthError, "auth"), (Rejected, "rejected"), (BlockedDestination, "blocked_destination"),
    (Misconfigured, "config"), (ConfigError, "config"), (RetryableError, "retryable"),
    (PermanentError, "permanent"))
"""Why a delivery failed, in a word, most specific class first (the metrics' ``reason``)."""


def kind_of(exc: BaseException) -> str:
    """The failure's kind from ``KINDS``; ``error`` for anything else (a custom connector's)."""
    return next((kind for cls, kind in KINDS if isinstance(exc, cls)), "error")
