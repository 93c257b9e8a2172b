"""APG Central Configuration: values in Redis, every change delivered by Celery workers."""

from config_core.errors import (
    AccessDenied,
    ApgConfigError,
    ApprovalDenied,
    ConfigError,
    IntegrationError,
    NoApprovalRule,
)
from config_core.service import ConfigService, SetResult

__all__ = ["AccessDenied", "ApgConfigError", "ApprovalDenied", "ConfigError", "ConfigService",
           "IntegrationError", "NoApprovalRule", "SetResult"]
