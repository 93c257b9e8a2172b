"""SplunkConnector: configuration events as HEC envelopes, buffered and posted in batches."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

from connectors import http
from connectors.base import BaseConnector
from connectors.errors import ConnectorError, PartialFailure, RetryableError
from connectors.settings import Setting
from connectors.splunk.envelope import MAX_REQUEST_BYTES, build_envelope, encode, fit_envelope
from connectors.splunk.hec import (
    EVENT_CODES,
    EVENT_PATH,
    HEALTH_PATH,
    Answer,
    RetryableAfter,
    base_url,
    check_hec_url,
    error_for,
    parse_answer,
    split_requests,
)

DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 10_000
DEFAULT_FLUSH_INTERVAL_S = 30


def check_batch_size(value: int) -> str | None:
    """1 to ``MAX_BATCH_SIZE`` events per flush."""
    return None if 1 <= value <= MAX_BATCH_SIZE else f"must be 1 to {MAX_BATCH_SIZE}"


def check_positive(value: float) -> str | None:
    """Seconds, more than zero."""
    return None if value > 0 else "must be more than 0 seconds"


def check_index(value: str) -> str | None:
    """Splunk's index-name rules: lowercase letters, digits, ``_`` and ``-``; not first ``_``."""
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789_-")
    if value and value[0] not in "_-" and set(value) <= allowed:
        return None
    return "must be a Splunk index name (lowercase letters, digits, _ and -, not first _ or -)"


def check_not_blank(value: str) -> str | None:
    """A non-blank string."""
    return None if value.strip() else "must not be blank"


class SplunkConnector(BaseConnector):
    """Sends configuration events to Splunk's HTTP Event Collector, batched."""

    name = "splunk"
    rate_limit_source = "none documented; events are sent in batches"
    batched: ClassVar[bool] = True
    settings = (
        Setting("hec_url", required=True, check=check_hec_url,
                doc="Collector URL, e.g. `https://splunk.company.com:8088/services/collector` "
                    "(`.../services/collector/event` too); events go to `/event`."),
        Setting("hec_token", required=True, secret=True, check=check_not_blank,
                doc="HEC token, sent as `Authorization: Splunk <token>`."),
        Setting("index", check=check_index,
                doc="Index for every event; must be allowed for the token (else code 7)."),
        Setting("sourcetype", check=check_not_blank, doc="e.g. `apg:configuration`."),
        Setting("source", check=check_not_blank, doc="e.g. `central-configuration`."),
        Setting("ssl_verify", kind=bool, default=True,
                doc="Verify HEC's TLS certificate (false only for self-signed test setups)."),
        Setting("batch_size", kind=int, default=DEFAULT_BATCH_SIZE, check=check_batch_size,
                doc=f"Events per flush, 1 to {MAX_BATCH_SIZE}."),
        Setting("flush_interval", kind=(int, float), default=DEFAULT_FLUSH_INTERVAL_S,
                check=check_positive,
                doc="Seconds the oldest buffered event may wait before a smaller batch goes."),
    )

    def batch_policy(self, event: dict[str, Any], batching: dict[str, Any]
                     ) -> tuple[int, float]:
        """Every event is buffered: ``(batch_size, flush_interval)`` from this config."""
        return int(self.config["batch_size"]), float(self.config["flush_interval"])

    def prepare(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event's HEC envelope (runs in the flush chord's header)."""
        return build_envelope(event, self.config)

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Post one event on its own (batching bypassed)."""
        return self.send_batch([self.prepare(event)])

    def send_batch(self, items: list[Any]) -> dict[str, Any]:
        """Post the envelopes concatenated, in order, in bodies of at most 900 KB each."""
        lines = [_line(item) for item in items]
        pending = deque(split_requests(lines, MAX_REQUEST_BYTES))
        requests = 0
        while pending:
            offset, chunk = pending.popleft()
            answer = self._post(b"\n".join(chunk), offset)
            requests += 1
            if answer.ok:
                continue
            if answer.status == 413 and len(chunk) > 1:  # the server's limit is lower: halve
                half = len(chunk) // 2
                pending.appendleft((offset + half, chunk[half:]))
                pending.appendleft((offset, chunk[:half]))
                continue
            raise failure(answer, offset, len(chunk), self.secrets())
        return {"requests": requests, "events": len(items)}

    def health_check(self) -> bool:
        """True when ``/services/collector/health`` answers 200 (HEC healthy, token valid)."""
        url = base_url(str(self.config["hec_url"])) + HEALTH_PATH
        try:
            response = http.send("GET", url, secrets=self.secrets(), headers=self._headers(),
                                 verify=bool(self.config["ssl_verify"]))
        except ConnectorError:
            return False
        return response.status_code == 200

    def _post(self, body: bytes, offset: int) -> Answer:
        url = base_url(str(self.config["hec_url"])) + EVENT_PATH
        try:
            response = http.send("POST", url, secrets=self.secrets(), data=body,
                                 headers=self._headers(), verify=bool(self.config["ssl_verify"]))
        except RetryableError as exc:
            raise (RetryableAfter(accepted=offset, error=exc) if offset else exc) from None
        return parse_answer(response)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Splunk {self.config['hec_token']}",
                "Content-Type": "application/json"}


def failure(answer: Answer, offset: int, count: int, secrets: set[str]) -> ConnectorError:
    """The error for a refused request of ``count`` envelopes, the first at ``offset``.

    Items before ``offset`` were indexed by earlier requests, and items before HEC's
    ``invalid-event-number`` by this one: a ``PartialFailure`` names the first one refused.
    """
    error = error_for(answer, secrets)
    bad = answer.invalid_event
    if isinstance(error, RetryableError):
        accepted = offset + min(bad or 0, count)
        return RetryableAfter(accepted=accepted, error=error) if accepted else error
    one_event = answer.code in EVENT_CODES and bad is not None
    if answer.status == 413 and count == 1:
        bad, one_event = 0, True  # this envelope alone is over the server's limit
    cut = offset + min(bad or 0, count - 1)
    if one_event or cut:
        return PartialFailure(f"Splunk HEC indexed {cut} event(s), then refused one: {error}",
                              failed_index=cut, error=error)
    return error


def _line(item: Any) -> bytes:
    line = encode(item)
    if len(line) > MAX_REQUEST_BYTES and isinstance(item, dict):
        line = encode(fit_envelope(item, MAX_REQUEST_BYTES))
    return line
