"""Loopback fake of the Discord webhook API that enforces its documented contract.

Routes: ``POST``/``GET`` ``/api/v10/webhooks/{id}/{token}`` (also ``/api/v9/...`` and the
unversioned ``/api/webhooks/...``). Order of checks: route, webhook id, token, rate limit,
Content-Type, JSON, form validation (50035), empty message (50006), then 200/204.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import secrets
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

WEBHOOK_PATH_RE = re.compile(
    r"^/api(?:/v(?P<version>9|10))?/webhooks/(?P<id>[^/]+)/(?P<token>[^/]+)/?$"
)
"""Execute / get-with-token route; the version segment is optional (v9, v10)."""

DISCORD_EPOCH_MS = 1_420_070_400_000
"""Snowflake epoch (2015-01-01T00:00:00Z)."""

TOKEN_BYTES = 51
"""``secrets.token_urlsafe(51)`` yields 68 characters, the length of a real webhook token."""

DISCORD_CONTENT_LIMIT = 2000
DISCORD_EMBEDS_LIMIT = 10
DISCORD_EMBED_TITLE_LIMIT = 256
DISCORD_EMBED_DESCRIPTION_LIMIT = 4096
DISCORD_EMBED_FIELDS_LIMIT = 25
DISCORD_FIELD_NAME_LIMIT = 256
DISCORD_FIELD_VALUE_LIMIT = 1024
DISCORD_FOOTER_TEXT_LIMIT = 2048
DISCORD_AUTHOR_NAME_LIMIT = 256
DISCORD_EMBED_TOTAL_LIMIT = 6000
"""Sum of title, description, field names/values, footer.text, author.name over all embeds."""
DISCORD_USERNAME_LIMIT = 80
DISCORD_USERNAME_FORBIDDEN = ("clyde", "discord")
DISCORD_MENTION_IDS_LIMIT = 100
DISCORD_MENTION_PARSE_VALUES = frozenset({"roles", "users", "everyone"})
DISCORD_COLOR_MAX = 0xFFFFFF
IS_COMPONENTS_V2 = 1 << 15
"""Message flag after which only ``components`` may be sent."""

TRUE_VALUES = ("true", "1")
FALSE_VALUES = ("false", "0")

UNKNOWN_WEBHOOK = {"code": 10015, "message": "Unknown Webhook"}
INVALID_TOKEN = {"code": 50027, "message": "Invalid Webhook Token"}
INVALID_JSON = {"code": 50109, "message": "The request body contains invalid JSON."}
EMPTY_MESSAGE = {"code": 50006, "message": "Cannot send an empty message"}
NOT_FOUND = {"code": 0, "message": "404: Not Found"}
METHOD_NOT_ALLOWED = {"code": 0, "message": "405: Method Not Allowed"}
MISSING_PERMISSIONS = {"code": 50013, "message": "Missing Permissions"}

_sequence = itertools.count()


def snowflake() -> str:
    """A fresh, increasing Discord-style snowflake id."""
    ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return str((ms << 22) | (next(_sequence) % (1 << 22)))


def invalid_form_body(errors: FormErrors) -> Reply:
    """400 with Discord's 50035 error tree."""
    return json_reply(400, {"code": 50035, "message": "Invalid Form Body",
                            "errors": errors.tree})


def rate_limited(retry_after_s: float, limit: int, bucket: str) -> Reply:
    """Discord's 429 body and headers for a per-webhook (user-scoped) limit."""
    headers = {
        "Retry-After": str(max(1, math.ceil(retry_after_s))),
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": f"{time.time() + retry_after_s:.3f}",
        "X-RateLimit-Reset-After": f"{retry_after_s:.3f}",
        "X-RateLimit-Bucket": bucket,
        "X-RateLimit-Scope": "user",
    }
    body = {"message": "You are being rate limited.", "retry_after": round(retry_after_s, 3),
            "global": False}
    return json_reply(429, body, headers)


def bucket_for(webhook_id: str) -> str:
    """An opaque, stable bucket hash per webhook."""
    return hashlib.sha1(webhook_id.encode()).hexdigest()[:32]


def _not_snowflake(webhook_id: str) -> Reply:
    errors = FormErrors()
    errors.add(("webhook_id",), "NUMBER_TYPE_COERCE", f'Value "{webhook_id}" is not snowflake.')
    return invalid_form_body(errors)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


Path = tuple[str | int, ...]


class FormErrors:
    """Discord's nested ``errors`` tree of a 50035 Invalid Form Body."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}

    def add(self, path: Path, code: str, message: str) -> None:
        """Record one error at ``path`` (e.g. ``("embeds", 0, "title")``)."""
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})

    def __bool__(self) -> bool:
        return bool(self.tree)


def validate_message(body: Any, errors: FormErrors) -> None:
    """Add every form error of an execute-webhook body to ``errors``."""
    if not isinstance(body, dict):
        errors.add((), "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
        return
    _check_string(errors, ("content",), body.get("content"), DISCORD_CONTENT_LIMIT, strip=False)
    _check_username(errors, body.get("username"))
    _check_embeds(errors, body.get("embeds"))
    _check_allowed_mentions(errors, body.get("allowed_mentions"))
    _check_flags(errors, body)


def is_empty_message(body: dict[str, Any]) -> bool:
    """True when the body has none of content, embeds, components, poll (error 50006)."""
    content = body.get("content")
    return not (
        (isinstance(content, str) and content.strip())
        or body.get("embeds") or body.get("components") or body.get("poll")
    )


def _check_string(errors: FormErrors, path: Path, value: Any, limit: int, *,
                  strip: bool = True, required: bool = False) -> int:
    """Check one string against its limit; return its counted length."""
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return 0
    if not isinstance(value, str):
        errors.add(path, "BASE_TYPE_BAD_TYPE", "Must be a string.")
        return 0
    text = value.strip() if strip else value
    if required and not text:
        errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
    elif len(text) > limit:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    return len(text)


def _check_list(errors: FormErrors, path: Path, value: Any, limit: int) -> list[Any]:
    """Check a list's type and size; return it (empty when absent or not a list)."""
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")
        return []
    if len(value) > limit:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
    return value


def _is_dict(errors: FormErrors, path: Path, value: Any) -> bool:
    if isinstance(value, dict):
        return True
    errors.add(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    return False


def _check_username(errors: FormErrors, username: Any) -> None:
    _check_string(errors, ("username",), username, DISCORD_USERNAME_LIMIT, strip=False)
    if not isinstance(username, str):
        return
    for word in DISCORD_USERNAME_FORBIDDEN:
        if word in username.lower():
            errors.add(("username",), "USERNAME_INVALID_CONTAINS",
                       f'Username cannot contain "{word}"')


def _check_embeds(errors: FormErrors, embeds: Any) -> None:
    items = _check_list(errors, ("embeds",), embeds, DISCORD_EMBEDS_LIMIT)
    total = sum(_check_embed(errors, ("embeds", i), embed) for i, embed in enumerate(items))
    if total > DISCORD_EMBED_TOTAL_LIMIT:
        errors.add(("embeds",), "MAX_EMBED_SIZE_EXCEEDED",
                   f"Embed size exceeds maximum size of {DISCORD_EMBED_TOTAL_LIMIT}")


def _check_embed(errors: FormErrors, path: Path, embed: Any) -> int:
    """Check one embed; return the characters it adds to the 6000 total."""
    if not _is_dict(errors, path, embed):
        return 0
    total = _check_string(errors, (*path, "title"), embed.get("title"),
                          DISCORD_EMBED_TITLE_LIMIT)
    total += _check_string(errors, (*path, "description"), embed.get("description"),
                           DISCORD_EMBED_DESCRIPTION_LIMIT)
    total += _check_part(errors, (*path, "footer"), embed.get("footer"), "text",
                         DISCORD_FOOTER_TEXT_LIMIT)
    total += _check_part(errors, (*path, "author"), embed.get("author"), "name",
                         DISCORD_AUTHOR_NAME_LIMIT)
    total += _check_fields(errors, (*path, "fields"), embed.get("fields"))
    _check_color(errors, (*path, "color"), embed.get("color"))
    _check_timestamp(errors, (*path, "timestamp"), embed.get("timestamp"))
    return total


def _check_part(errors: FormErrors, path: Path, part: Any, key: str, limit: int) -> int:
    """Check ``footer`` / ``author``, whose one text (``key``) is required."""
    if part is None or not _is_dict(errors, path, part):
        return 0
    return _check_string(errors, (*path, key), part.get(key), limit, required=True)


def _check_fields(errors: FormErrors, path: Path, fields: Any) -> int:
    total = 0
    for i, item in enumerate(_check_list(errors, path, fields, DISCORD_EMBED_FIELDS_LIMIT)):
        if not _is_dict(errors, (*path, i), item):
            continue
        total += _check_string(errors, (*path, i, "name"), item.get("name"),
                               DISCORD_FIELD_NAME_LIMIT, required=True)
        total += _check_string(errors, (*path, i, "value"), item.get("value"),
                               DISCORD_FIELD_VALUE_LIMIT, required=True)
        if item.get("inline") is not None and not isinstance(item["inline"], bool):
            errors.add((*path, i, "inline"), "BASE_TYPE_BAD_TYPE", "Must be a boolean.")
    return total


def _check_color(errors: FormErrors, path: Path, color: Any) -> None:
    if color is None:
        return
    if isinstance(color, bool) or not isinstance(color, int) or not 0 <= color <= DISCORD_COLOR_MAX:
        errors.add(path, "NUMBER_TYPE_MAX",
                   f"int value should be <= {DISCORD_COLOR_MAX} and >= 0.")


def _check_timestamp(errors: FormErrors, path: Path, stamp: Any) -> None:
    if stamp is None:
        return
    try:
        datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        errors.add(path, "DATE_TIME_TYPE_PARSE", f"Could not parse {stamp}. Should be ISO8601.")


def _check_allowed_mentions(errors: FormErrors, mentions: Any) -> None:
    path: Path = ("allowed_mentions",)
    if mentions is None or not _is_dict(errors, path, mentions):
        return
    parse = _check_list(errors, (*path, "parse"), mentions.get("parse"), 3)
    for i, value in enumerate(parse):
        if value not in DISCORD_MENTION_PARSE_VALUES:
            errors.add((*path, "parse", i), "ENUM_TYPE_COERCE",
                       f'Value "{value}" is not a valid enum value.')
    for kind in ("users", "roles"):
        _check_list(errors, (*path, kind), mentions.get(kind), DISCORD_MENTION_IDS_LIMIT)
        if kind in parse and mentions.get(kind) is not None:
            errors.add(path, "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                       f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.')


def _check_flags(errors: FormErrors, body: dict[str, Any]) -> None:
    flags = body.get("flags")
    if flags is None:
        return
    if isinstance(flags, bool) or not isinstance(flags, int):
        errors.add(("flags",), "NUMBER_TYPE_COERCE", f'Value "{flags}" is not int.')
    elif flags & IS_COMPONENTS_V2 and any(body.get(k) for k in ("content", "embeds", "poll")):
        errors.add(("flags",), "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                   "The 'content', 'embeds' and 'poll' fields cannot be used with "
                   "IS_COMPONENTS_V2.")


class FakeDiscord(ServerBase):
    """Discord webhooks on 127.0.0.1: validates executes, records accepted messages."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self._webhooks: dict[str, dict[str, Any]] = {}

    def add_webhook(self, webhook_id: str | None = None, token: str | None = None,
                    name: str = "APG Config Hook") -> str:
        """Register a webhook and return its full execute URL (``/api/v10/webhooks/...``)."""
        webhook_id = webhook_id or snowflake()
        if not webhook_id.isdigit():
            raise ValueError(f"a Discord webhook id is a numeric snowflake, got {webhook_id!r}")
        token = token or secrets.token_urlsafe(TOKEN_BYTES)
        with self._lock:
            self._webhooks[webhook_id] = {
                "id": webhook_id, "type": 1, "name": name, "avatar": None,
                "channel_id": snowflake(), "guild_id": snowflake(), "application_id": None,
                "token": token,
            }
        return f"{self.base_url}/api/v10/webhooks/{webhook_id}/{token}"

    def delete_webhook(self, webhook_url: str) -> None:
        """Forget a webhook, so that it answers 404 Unknown Webhook from now on."""
        with self._lock:
            self._webhooks.pop(self.key_for(webhook_url), None)

    def webhook_key(self, url_or_path: str) -> str | None:
        """The webhook id in a Discord webhook URL or path."""
        match = WEBHOOK_PATH_RE.match(urlsplit(url_or_path).path)
        return match["id"] if match else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """Discord's own body (and headers) for a scripted failure."""
        if status == 429:
            return rate_limited(retry_after_s, 1, bucket_for("scripted"))
        known = {400: {"code": 50035, "message": "Invalid Form Body", "errors": {}},
                 401: INVALID_TOKEN, 403: MISSING_PERMISSIONS, 404: UNKNOWN_WEBHOOK}
        generic = {"code": 0, "message": f"{status}: {_phrase(status)}"}
        return json_reply(status, known.get(status, generic))

    def handle(self, request: RecordedRequest) -> Reply:
        """Route, authenticate, rate-limit and validate one request."""
        match = WEBHOOK_PATH_RE.match(request.path)
        if match is None:
            return json_reply(404, NOT_FOUND)
        if not match["id"].isdigit():
            return _not_snowflake(match["id"])
        webhook = self._webhook(match["id"])
        if webhook is None:
            return json_reply(404, UNKNOWN_WEBHOOK)
        if match["token"] != webhook["token"]:
            return json_reply(401, INVALID_TOKEN)
        if request.method == "GET":
            return json_reply(200, webhook)
        if request.method != "POST":
            return json_reply(405, METHOD_NOT_ALLOWED)
        return self._execute(request, webhook)

    def _webhook(self, webhook_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._webhooks.get(webhook_id)
            return dict(found) if found else None

    def _execute(self, request: RecordedRequest, webhook: dict[str, Any]) -> Reply:
        window = self.take_rate_slot(webhook["id"])
        if window is not None and not window.allowed:
            return rate_limited(window.reset_after_s, window.limit, bucket_for(webhook["id"]))
        refusal = self._refuse_payload(request)
        if refusal is not None:
            return refusal
        body: dict[str, Any] = request.json
        self.accept(webhook["id"], body)
        headers = {}
        if window is not None:
            headers = {"X-RateLimit-Limit": str(window.limit),
                       "X-RateLimit-Remaining": str(window.remaining),
                       "X-RateLimit-Reset-After": f"{window.reset_after_s:.3f}",
                       "X-RateLimit-Bucket": bucket_for(webhook["id"])}
        if request.query.get("wait", "false").lower() in TRUE_VALUES:
            return json_reply(200, self._message_object(body, webhook), headers)
        return Reply(204, b"", headers)

    def _refuse_payload(self, request: RecordedRequest) -> Reply | None:
        if not _is_json(request.header("Content-Type")):
            return json_reply(400, INVALID_JSON)
        if request.json is None:
            return json_reply(400, INVALID_JSON)
        errors = FormErrors()
        wait = request.query.get("wait")
        if wait is not None and wait.lower() not in TRUE_VALUES + FALSE_VALUES:
            errors.add(("wait",), "BOOLEAN_TYPE_CONVERT", "Must be either true or false.")
        validate_message(request.json, errors)
        if errors:
            return invalid_form_body(errors)
        if is_empty_message(request.json):
            return json_reply(400, EMPTY_MESSAGE)
        return None

    def _message_object(self, body: dict[str, Any], webhook: dict[str, Any]) -> dict[str, Any]:
        embeds = [{"type": "rich", **embed} for embed in body.get("embeds") or []]
        return {
            "id": snowflake(), "type": 0, "channel_id": webhook["channel_id"],
            "webhook_id": webhook["id"], "content": body.get("content") or "", "embeds": embeds,
            "author": {"id": webhook["id"], "username": body.get("username") or webhook["name"],
                       "bot": True, "discriminator": "0000", "avatar": None},
            "timestamp": datetime.now(UTC).isoformat(), "tts": bool(body.get("tts")),
            "mentions": [], "mention_roles": [], "attachments": [],
            "components": body.get("components") or [], "flags": body.get("flags") or 0,
        }
