"""The import path the enterprise connectors guide uses for ``BaseConnector``.

``from capabilities.composition.central_configuration.integrations.enterprise_connectors
import BaseConnector`` works as the guide shows, and so does ``RateLimitError``, what a connector
raises when the vendor rate limits it (the guide's backoff example catches it); new code should
import from ``connectors``.
"""

from connectors.base import BaseConnector
from connectors.errors import ConnectorError, PermanentError, RateLimitError, RetryableError

__all__ = ["BaseConnector", "ConnectorError", "PermanentError", "RateLimitError",
           "RetryableError"]
