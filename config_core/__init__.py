"""APG Central Configuration: values in Redis, every change delivered by Celery workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from config_core.errors import AccessDenied, ApgConfigError, ConfigError, IntegrationError

if TYPE_CHECKING:
    from config_core.service import ConfigService, SetResult

__all__ = ["AccessDenied", "ApgConfigError", "ConfigError", "ConfigService", "IntegrationError",
           "SetResult"]


def __getattr__(name: str) -> Any:
    # The service is loaded on first use so that `connectors` can import config_core's small
    # modules (errors, masking) without a circular import.
    if name in ("ConfigService", "SetResult"):
        from config_core import service

        return getattr(service, name)
    raise AttributeError(f"module 'config_core' has no attribute {name!r}")
