"""Connectors: one module per vendor, a shared HTTP client, and the BaseConnector contract."""

from connectors.base import AsyncConnector, BaseConnector
from connectors.errors import (
    AuthError,
    ConnectorError,
    Misconfigured,
    PermanentError,
    RateLimited,
    Rejected,
    RetryableError,
    Skipped,
    TransportError,
    Unavailable,
)
from connectors.settings import Setting

__all__ = [
    "AsyncConnector", "AuthError", "BaseConnector", "ConnectorError", "Misconfigured",
    "PermanentError", "RateLimited", "Rejected", "RetryableError", "Setting", "Skipped",
    "TransportError",
    "Unavailable",
]
