"""The e-mail for one event (pure), and the checks its header values must pass.

Header values never carry a CR, LF or other control character: a setting holding one is
refused when it is stored, and text taken from an event (key, environment, event id) has such
characters replaced by spaces before it reaches a header. The body is plain text in the guide's
format; values arrive already masked, and continuation lines of a multi-line value are
indented so that a value cannot pose as another field.
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import re
from email.message import EmailMessage
from typing import Any

from connectors.chat import (
    event_time,
    event_title,
    guide_rows,
    render_value,
    truncate,
)

DEFAULT_SUBJECT_PREFIX = "[APG Config]"
"""Start of every subject unless ``subject_prefix`` is set."""

SUBJECT_LIMIT = 200
"""Characters of the subject after the prefix; longer keys are cut with an ellipsis."""

VALUE_LIMIT = 4000
"""Characters of one value in the body; a longer value is cut with an ellipsis."""

MAX_ADDRESS_LENGTH = 254
"""Longest address SMTP carries (RFC 5321's path limit less the angle brackets)."""

EVENT_ID_HEADER = "X-APG-Event-Id"
"""Names the event in every message, next to the Message-ID derived from it."""

FOOTER = "APG Central Configuration"

POLICY = email.policy.SMTP.clone(cte_type="7bit")
"""CRLF line ends, and a body that needs no 8BITMIME: non-ASCII text goes quoted-printable
or base64, non-ASCII header text as RFC 2047 encoded words."""

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS_RE = re.compile(rf"^{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+$")
_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def control_characters(value: str) -> str | None:
    """Error text when ``value`` holds CR, LF or another control character, else None."""
    if _CONTROL_RE.search(value):
        return "must not contain line breaks or other control characters"
    return None


def check_address(value: str) -> str | None:
    """A plain ASCII address such as ``ops@company.com`` (no display name, no line break)."""
    problem = control_characters(value)
    if problem:
        return problem
    if len(value) > MAX_ADDRESS_LENGTH or not _ADDRESS_RE.match(value):
        return f"must be an e-mail address like ops@company.com, got {value!r}"
    return None


def check_addresses(value: list[Any]) -> str | None:
    """A non-empty list of addresses (``check_address`` each)."""
    if not value:
        return "must list at least one address"
    for index, item in enumerate(value):
        problem = check_address(item) if isinstance(item, str) else "must be a string"
        if problem:
            return f"[{index}] {problem}"
    return None


def header_text(value: Any) -> str:
    """Event-derived text made safe for a header: control characters become spaces."""
    return _CONTROL_RE.sub(" ", render_value(value)).strip()


def message_id(event_id: Any, from_address: str) -> str:
    """``<apgcfg.{event_id}@{sender's domain}>``: the same event always gets the same id.

    An id with characters a Message-ID cannot hold is replaced by its SHA-256 digest.
    """
    raw = str(event_id or "")
    local = raw if _ID_RE.match(raw) else hashlib.sha256(raw.encode()).hexdigest()[:32]
    return f"<apgcfg.{local}@{from_address.rpartition('@')[2]}>"


def subject(event: dict[str, Any], config: dict[str, Any]) -> str:
    """``[APG Config] Configuration Changed: app.database.host (production)``."""
    title = event_title(event.get("type")).split(" ", 1)[-1]
    text = f"{title}: {header_text(event.get('key'))} ({header_text(event.get('environment'))})"
    prefix = str(config.get("subject_prefix") or DEFAULT_SUBJECT_PREFIX)
    return f"{prefix} {truncate(text, SUBJECT_LIMIT)}"


def body(event: dict[str, Any]) -> str:
    """The guide's notification as plain text, then the reason and a footer."""
    rows = guide_rows(event)
    lines = [event_title(event.get("type"))]
    lines += [f"{label}: {_indented(truncate(value, VALUE_LIMIT))}" for label, value in rows]
    footer = [FOOTER] + [f"{label} {event[name]}" for label, name in
                         (("tenant", "tenant"), ("version", "version"), ("event", "event_id"))
                         if event.get(name) is not None]
    return "\n".join([*lines, "", "-- ", " · ".join(footer)]) + "\n"


def _indented(value: str) -> str:
    return "\n  ".join(value.splitlines()) if "\n" in value or "\r" in value else value


def build_message(event: dict[str, Any], config: dict[str, Any]) -> EmailMessage:
    """The message for ``event`` under ``config`` (pure: no clock, no network)."""
    message = EmailMessage(policy=POLICY)
    message["Subject"] = subject(event, config)
    message["From"] = config["from_address"]
    message["To"] = ", ".join(config["to"])
    moment = event_time(event)
    if moment is not None:
        message["Date"] = email.utils.format_datetime(moment)
    message["Message-ID"] = message_id(event.get("event_id"), config["from_address"])
    message[EVENT_ID_HEADER] = header_text(event.get("event_id"))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body(event))
    return message
