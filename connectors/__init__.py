"""Connectors: one module per vendor, a shared HTTP client, and the BaseConnector contract."""

from config_core import hooks
from connectors import registry
from connectors.base import AsyncConnector, BaseConnector
from connectors.errors import (
    AuthError,
    ConnectorError,
    Misconfigured,
    PermanentError,
    RateLimited,
    RateLimitError,
    Rejected,
    RetryableError,
    Skipped,
    TransportError,
    Unavailable,
)
from connectors.settings import Setting

hooks.register_catalog(registry.Catalog())

__all__ = [
    "AsyncConnector", "AuthError", "BaseConnector", "ConnectorError", "Misconfigured",
    "PermanentError", "RateLimitError", "RateLimited", "Rejected", "RetryableError", "Setting",
    "Skipped", "TransportError",
    "Unavailable",
]
