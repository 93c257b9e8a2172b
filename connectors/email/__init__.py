"""E-mail: one plain-text message per configuration event, sent through an SMTP relay.

``build_message`` is pure; ``smtp`` opens the session (egress policy, TLS, timeouts) and types
its failures. Each message's Message-ID is derived from the event id, so a receiving server
can drop a second copy; a delivery whose attempt died mid-send is not sent again.
"""

from connectors.email.connector import EmailConnector
from connectors.email.message import build_message

__all__ = ["EmailConnector", "build_message"]
