"""Splunk HTTP Event Collector: configuration events as HEC envelopes, batched.

``envelope`` builds each event's envelope (pure: the guide's shape, truncated to fit 900 KB),
``hec`` knows HEC's URLs, request bodies and reply codes, and ``connector`` posts batches:
events are buffered in Redis by the batching core and flushed as a chord whose body calls
``send_batch`` with the prepared envelopes.
"""

from connectors.splunk.connector import SplunkConnector, failure
from connectors.splunk.envelope import (
    MAX_REQUEST_BYTES,
    TRUNCATED,
    action,
    build_envelope,
    build_event,
    encode,
    event_epoch,
    fit_envelope,
)
from connectors.splunk.hec import (
    CODE_TEXT,
    Answer,
    RetryableAfter,
    base_url,
    check_hec_url,
    error_for,
    parse_answer,
    split_requests,
)

__all__ = ["CODE_TEXT", "MAX_REQUEST_BYTES", "TRUNCATED", "Answer", "RetryableAfter",
           "SplunkConnector", "action", "base_url", "build_envelope", "build_event",
           "check_hec_url", "encode", "error_for", "event_epoch", "failure", "fit_envelope",
           "parse_answer", "split_requests"]
