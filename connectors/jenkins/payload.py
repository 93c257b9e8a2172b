"""Pure parts of the Jenkins connector: settings checks, build parameters, URLs, Jenkins' answers.

Nothing here does I/O: an event and a config go in, the request's parts come out; a response's
JSON or HTML goes in, the fact the connector needs comes out.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from config_core.routing import matches_any

EVENT_ID_PARAMETER = "APGCFG_EVENT_ID"
"""Build parameter carrying the event id: the fingerprint that finds an earlier attempt's build."""

CHANGE_PARAMETERS = ("CONFIG_KEY", "CONFIG_VALUE", "USER_ID")
"""The parameters of the guide's pipeline example, filled from the event."""

RESERVED_PARAMETERS = frozenset({*CHANGE_PARAMETERS, EVENT_ID_PARAMETER})
"""Names ``job_parameters`` may not use: the event's own values always win."""

TRIGGER_TYPE = "config.changed"
"""The only event type that starts a build."""

NOT_PARAMETERIZED = "is not parameterized"
"""Jenkins' text (in a 500) when ``buildWithParameters`` is called on a job without parameters."""

_QUEUE_ITEM_RE = re.compile(r"/queue/item/\d+/?$")
_EXCEPTION_RE = re.compile(r"java\.lang\.\w+(?:Exception|Error): ([^\n<]+)")
_MESSAGE_RE = re.compile(r"<th>MESSAGE:</th>\s*<td>(.*?)</td>", re.S | re.I)
_TITLE_RE = re.compile(r"<title>(.*?)</title>", re.S | re.I)
_TAG_RE = re.compile(r"<[^>]+>")
MESSAGE_LIMIT = 300
"""Characters of Jenkins' error text kept for the ledger."""


# Settings checks ---------------------------------------------------------------------------


def check_job(value: str) -> str | None:
    """A job's full name: ``name`` or ``folder/name`` (non-empty segments)."""
    if value and all(segment.strip() for segment in value.split("/")):
        return None
    return 'must be a job name, with folders as "folder/job" (no empty segments)'


def check_job_parameters(value: dict[str, Any]) -> str | None:
    """Names → string values; the event's own parameter names are reserved."""
    for name, parameter in value.items():
        if not isinstance(name, str) or not name.strip():
            return "must have non-empty parameter names"
        if name in RESERVED_PARAMETERS:
            return f"must not set {name!r}: the connector fills it from the event"
        if not isinstance(parameter, str):
            return f"[{name!r}]: values must be strings (Jenkins string parameters)"
    return None


def check_positive(value: float) -> str | None:
    """A number of seconds greater than zero."""
    return None if value > 0 else "must be greater than 0"


def check_not_blank(value: str) -> str | None:
    """A non-empty string."""
    return None if value.strip() else "must not be empty"


# Events and requests -----------------------------------------------------------------------


def skip_reason(event: dict[str, Any], config: dict[str, Any]) -> str | None:
    """Why ``event`` starts no build, or None when it should."""
    if event.get("type") != TRIGGER_TYPE:
        return f"{event.get('type')} events never trigger a build (only {TRIGGER_TYPE})"
    key = str(event.get("key") or "")
    patterns = config.get("trigger_patterns") or ()
    if not matches_any(key, patterns):
        return f"key {key!r} matches no trigger_patterns {list(patterns)}"
    return None


def parameter_value(value: Any) -> str:
    """A string parameter: strings as they are, anything else as JSON (None → ``null``)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def build_parameters(event: dict[str, Any], config: dict[str, Any]) -> dict[str, str]:
    """The form fields of ``buildWithParameters``: ``job_parameters``, the change, the event id."""
    parameters = {str(k): str(v) for k, v in (config.get("job_parameters") or {}).items()}
    parameters.update({
        "CONFIG_KEY": str(event.get("key") or ""),
        "CONFIG_VALUE": parameter_value(event.get("new_value")),
        "USER_ID": str(event.get("changed_by") or ""),
        EVENT_ID_PARAMETER: str(event["event_id"]),
    })
    return parameters


def job_path(job: str) -> str:
    """``a/b`` → ``/job/a/job/b``, each name URL-encoded."""
    return "".join(f"/job/{quote(segment, safe='')}" for segment in job.split("/"))


def on_server(base_url: str, url: str) -> str:
    """``url`` (absolute, or relative to Jenkins' root) on the configured server.

    Scheme and host always come from ``base_url``, so the credentials never follow a URL that
    Jenkins (or anyone answering for it) pointed elsewhere.
    """
    parts = urlsplit(urljoin(base_url.rstrip("/") + "/", url))
    root = urlsplit(base_url)
    return urlunsplit(parts._replace(scheme=root.scheme, netloc=root.netloc))


def api_url(url: str, tree: str | None = None) -> str:
    """The JSON API of a Jenkins object URL, optionally filtered with ``tree``."""
    return url.rstrip("/") + "/api/json" + (f"?tree={tree}" if tree else "")


def is_queue_item(url: str) -> bool:
    """True when ``url`` names a queue item (``.../queue/item/<n>/``)."""
    return bool(_QUEUE_ITEM_RE.search(urlsplit(url).path))


# Jenkins' answers --------------------------------------------------------------------------


def parameters_of(item: dict[str, Any]) -> dict[str, str]:
    """The build parameters of a queue item or build (from its ``ParametersAction``)."""
    found: dict[str, str] = {}
    for action in item.get("actions") or ():
        for parameter in (action or {}).get("parameters") or ():
            if isinstance(parameter, dict) and "name" in parameter:
                found[str(parameter["name"])] = str(parameter.get("value"))
    return found


def carrying(items: list[dict[str, Any]], event_id: str) -> dict[str, Any] | None:
    """The first queue item or build whose fingerprint parameter is ``event_id``."""
    for item in items:
        if parameters_of(item).get(EVENT_ID_PARAMETER) == event_id:
            return item
    return None


def jenkins_message(text: str) -> str | None:
    """Jenkins' own error text from a response body (JSON, its error page, or plain text)."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        return _short(str(body["message"]))
    for pattern in (_EXCEPTION_RE, _MESSAGE_RE, _TITLE_RE):
        match = pattern.search(text)
        if match and match.group(1).strip():
            return _short(html.unescape(_TAG_RE.sub("", match.group(1))))
    plain = _TAG_RE.sub(" ", text)
    return _short(plain) if plain.strip() else None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"
