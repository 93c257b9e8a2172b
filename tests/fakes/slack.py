"""Loopback fake of Slack incoming webhooks that enforces their documented contract.

Route: ``POST /services/T.../B.../{secret}``. Answers are plain strings served as text/html:
``ok`` (200), ``no_service`` (404), ``channel_is_archived`` (410), ``invalid_payload`` /
``no_text`` / ``invalid_blocks`` (400) and ``rate_limited`` (429 with ``Retry-After``).
"""

from __future__ import annotations

import copy
import math
import re
import secrets
import string
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, text_reply

WEBHOOK_PATH_RE = re.compile(r"^/services/(T[A-Z0-9]+)/(B[A-Z0-9]+)/([A-Za-z0-9]+)/?$")
"""``/services/{team}/{bot}/{secret}``."""

SLACK_TEXT_TRUNCATE_AT = 40_000
"""``text`` beyond this many characters is accepted but truncated."""
SLACK_BLOCKS_LIMIT = 50
SLACK_SECTION_TEXT_LIMIT = 3000
SLACK_SECTION_FIELDS_LIMIT = 10
SLACK_SECTION_FIELD_TEXT_LIMIT = 2000
SLACK_HEADER_TEXT_LIMIT = 150
SLACK_CONTEXT_ELEMENTS_LIMIT = 10
SLACK_ACTIONS_ELEMENTS_LIMIT = 25
SLACK_BLOCK_ID_LIMIT = 255
SLACK_TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})
SLACK_BLOCK_TYPES = frozenset({"section", "header", "context", "divider", "actions", "image"})

ID_ALPHABET = string.ascii_uppercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 24

DOCUMENTED_RATE = (1, 1.0)
"""Slack's posting rate: about one message per second per webhook (then 429 + Retry-After).
Slack tolerates short bursts; ``FakeSlack(documented_rate=True)`` does not: one per second."""

FAILURE_TEXTS = {400: "invalid_payload", 403: "action_prohibited", 404: "no_service",
                 410: "channel_is_archived", 429: "rate_limited", 500: "rollup_error"}
"""Slack's body for each status a test may script."""


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def rate_limited(retry_after_s: float) -> Reply:
    """Slack's 429: ``rate_limited`` with an integer ``Retry-After``."""
    return text_reply(429, "rate_limited", {"Retry-After": str(max(1, math.ceil(retry_after_s)))})


def blocks_problem(blocks: Any) -> str | None:
    """Why a ``blocks`` value is invalid, or None when Slack would accept it."""
    if not isinstance(blocks, list):
        return "blocks must be a list"
    if len(blocks) > SLACK_BLOCKS_LIMIT:
        return f"more than {SLACK_BLOCKS_LIMIT} blocks"
    for i, block in enumerate(blocks):
        problem = _block_problem(block)
        if problem:
            return f"blocks[{i}]: {problem}"
    return None


def _block_problem(block: Any) -> str | None:
    if not isinstance(block, dict):
        return "not an object"
    kind = block.get("type")
    if kind not in SLACK_BLOCK_TYPES:
        return f"unknown block type {kind!r}"
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str)
                                 or len(block_id) > SLACK_BLOCK_ID_LIMIT):
        return "bad block_id"
    checks = {"section": _section_problem, "header": _header_problem,
              "context": _context_problem, "actions": _actions_problem, "image": _image_problem}
    check = checks.get(kind)
    return check(block) if check else None


def _text_problem(text: Any, limit: int, types: frozenset[str] = SLACK_TEXT_TYPES) -> str | None:
    if not isinstance(text, dict) or text.get("type") not in types:
        return f"text object must have type in {sorted(types)}"
    value = text.get("text")
    if not isinstance(value, str) or not value:
        return "text object needs a non-empty text"
    if len(value) > limit:
        return f"text longer than {limit}"
    return None


def _section_problem(block: dict[str, Any]) -> str | None:
    text, fields = block.get("text"), block.get("fields")
    if text is None and not fields:
        return "section needs text or fields"
    if text is not None:
        problem = _text_problem(text, SLACK_SECTION_TEXT_LIMIT)
        if problem:
            return f"text: {problem}"
    if fields is None:
        return None
    if not isinstance(fields, list) or len(fields) > SLACK_SECTION_FIELDS_LIMIT:
        return f"fields must be a list of at most {SLACK_SECTION_FIELDS_LIMIT}"
    for i, field in enumerate(fields):
        problem = _text_problem(field, SLACK_SECTION_FIELD_TEXT_LIMIT)
        if problem:
            return f"fields[{i}]: {problem}"
    return None


def _header_problem(block: dict[str, Any]) -> str | None:
    return _text_problem(block.get("text"), SLACK_HEADER_TEXT_LIMIT, frozenset({"plain_text"}))


def _context_problem(block: dict[str, Any]) -> str | None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= SLACK_CONTEXT_ELEMENTS_LIMIT:
        return f"context needs 1 to {SLACK_CONTEXT_ELEMENTS_LIMIT} elements"
    return None


def _actions_problem(block: dict[str, Any]) -> str | None:
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= SLACK_ACTIONS_ELEMENTS_LIMIT:
        return f"actions needs 1 to {SLACK_ACTIONS_ELEMENTS_LIMIT} elements"
    return None


def _image_problem(block: dict[str, Any]) -> str | None:
    if not isinstance(block.get("image_url"), str) or not isinstance(block.get("alt_text"), str):
        return "image needs image_url and alt_text"
    return None


def payload_problem(body: dict[str, Any]) -> str | None:
    """Slack's error code for an incoming-webhook JSON body, or None when it is accepted."""
    text, blocks, attachments = body.get("text"), body.get("blocks"), body.get("attachments")
    if text is not None and not isinstance(text, str):
        return "invalid_payload"
    if attachments is not None and not isinstance(attachments, list):
        return "invalid_payload"
    if blocks is not None and blocks_problem(blocks):
        return "invalid_blocks"
    if not (text or blocks or attachments):
        return "no_text"
    return None


class FakeSlack(ServerBase):
    """Slack incoming webhooks on 127.0.0.1: validates posts, records accepted messages."""

    def __init__(self, delay_s: float = 0.0, *, documented_rate: bool = False) -> None:
        """``documented_rate``: each webhook takes one post per sliding second, and answers
        others 429 ``rate_limited`` with ``Retry-After`` (off by default, as for fast tests)."""
        super().__init__(delay_s)
        self._paths: set[str] = set()
        self._archived: set[str] = set()
        if documented_rate:
            self.rate_limit(*DOCUMENTED_RATE)

    def add_webhook(self) -> str:
        """Register a webhook and return its URL ``.../services/T.../B.../{secret}``."""
        team, bot = "T" + _random(ID_ALPHABET, 10), "B" + _random(ID_ALPHABET, 10)
        path = f"/services/{team}/{bot}/{_random(SECRET_ALPHABET, SECRET_LENGTH)}"
        with self._lock:
            self._paths.add(path)
        return self.base_url + path

    def archive_webhook(self, webhook_url: str) -> None:
        """Make a webhook answer 410 ``channel_is_archived`` from now on."""
        with self._lock:
            self._archived.add(self.key_for(webhook_url))

    def revoke_webhook(self, webhook_url: str) -> None:
        """Remove a webhook, so that it answers 404 ``no_service`` from now on."""
        with self._lock:
            self._paths.discard(self.key_for(webhook_url))

    def webhook_key(self, url_or_path: str) -> str | None:
        """The path of a Slack webhook URL (its identity), or None for other paths."""
        path = urlsplit(url_or_path).path.rstrip("/")
        return path if WEBHOOK_PATH_RE.match(path) else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """Slack's own body (and ``Retry-After``) for a scripted failure."""
        if status == 429:
            return rate_limited(retry_after_s)
        return text_reply(status, FAILURE_TEXTS.get(status, "error"))

    def handle(self, request: RecordedRequest) -> Reply:
        """Route, rate-limit and validate one post."""
        key = self.webhook_key(request.path)
        with self._lock:
            known, archived = key in self._paths, key in self._archived
        if key is None or not known:
            return text_reply(404, "no_service")
        if request.method != "POST":
            return text_reply(405, "invalid_method")
        if archived:
            return text_reply(410, "channel_is_archived")
        window = self.take_rate_slot(key)
        if window is not None and not window.allowed:
            return rate_limited(window.reset_after_s)
        problem = self._payload_problem(request)
        if problem:
            return text_reply(400, problem)
        self.accept(key, _truncated(request.json))
        return text_reply(200, "ok")

    def _payload_problem(self, request: RecordedRequest) -> str | None:
        if not _is_json(request.header("Content-Type")) or not isinstance(request.json, dict):
            return "invalid_payload"
        return payload_problem(request.json)


def _truncated(body: dict[str, Any]) -> dict[str, Any]:
    """The message as Slack stores it: ``text`` cut at 40,000 characters."""
    stored = copy.deepcopy(body)
    if isinstance(stored.get("text"), str):
        stored["text"] = stored["text"][:SLACK_TEXT_TRUNCATE_AT]
    return stored
