"""The import path the enterprise connectors guide uses for ``BaseConnector``.

``from capabilities.composition.central_configuration.integrations.enterprise_connectors
import BaseConnector`` works as the guide shows; new code should import from ``connectors``.
"""

from connectors.base import BaseConnector
from connectors.errors import ConnectorError, PermanentError, RetryableError

__all__ = ["BaseConnector", "ConnectorError", "PermanentError", "RetryableError"]
