"""New Relic: configuration changes, errors and timings as custom events (Event API).

``events`` builds each event (pure: the guide's ``ConfigurationChanged`` shape,
``ConfigurationError``, ``ConfigurationPerformance``), ``limits`` keeps them within New Relic's
limits (truncating values, splitting at 1 MB), ``checks`` validates the settings, and
``connector`` POSTs gzip'd JSON arrays with the ``Api-Key`` header.
"""

from connectors.new_relic.checks import DEFAULT_EVENT_TYPES, GUIDE_EVENT_TYPES, REGION_HOSTS
from connectors.new_relic.connector import NewRelicConnector, raise_for, rest_of_minute_s
from connectors.new_relic.events import (
    attribute_value,
    build_event,
    event_type,
    health_event,
    performance_event,
)
from connectors.new_relic.limits import (
    MAX_ATTRIBUTES,
    MAX_PAYLOAD_BYTES,
    encode,
    limit_event,
    split_batches,
    within_window,
)

__all__ = ["DEFAULT_EVENT_TYPES", "GUIDE_EVENT_TYPES", "MAX_ATTRIBUTES", "MAX_PAYLOAD_BYTES",
    "REGION_HOSTS", "NewRelicConnector", "attribute_value", "build_event", "encode",
    "event_type", "health_event", "limit_event", "performance_event", "raise_for",
    "rest_of_minute_s", "split_batches", "within_window"]
