"""Checks on keys and values, made before anything is written."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from config_core.errors import ConfigError

MAX_KEY_LENGTH = 256
"""Longest key accepted, in characters."""

MAX_VALUE_BYTES = 64 * 1024
"""Largest value accepted, measured as its UTF-8 JSON encoding."""

MAX_DEPTH = 64
"""Deepest nesting of lists and dicts accepted in a value (a scalar at top level is depth 0)."""

MAX_CHANGED_BY_LENGTH = 256
"""Longest ``changed_by`` accepted, in characters (an e-mail address or a service name)."""

MAX_REASON_LENGTH = 1000
"""Longest ``reason`` accepted, in characters."""

_KEY_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")

MAX_IDEMPOTENCY_KEY_LENGTH = 128
"""Longest idempotency key accepted, in characters."""

_IDEMPOTENCY_RE = re.compile(r"[A-Za-z0-9_.:-]+")


def check_key(key: object) -> str:
    """Return ``key`` if it is a valid dotted key, else raise ``ConfigError`` naming the problem."""
    if not isinstance(key, str):
        raise ConfigError(f"config key must be a string, got {type(key).__name__}")
    if not key:
        raise ConfigError("config key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ConfigError(
            f"config key {key[:40]!r}... is {len(key)} characters; the limit is {MAX_KEY_LENGTH}"
        )
    if not _KEY_RE.fullmatch(key):
        raise ConfigError(
            f"config key {key!r} is invalid: use dot-separated segments of letters, digits,"
            " '_' or '-'"
        )
    return key


def check_text(field: str, text: object, limit: int) -> str | None:
    """Return ``text`` (a string of at most ``limit`` characters, valid Unicode, or None),
    else raise ``ConfigError`` naming ``field``."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ConfigError(f"{field} must be a string, got {type(text).__name__}")
    if len(text) > limit:
        raise ConfigError(f"{field} is {len(text)} characters; the limit is {limit}")
    _check_unicode(field, text)
    return text


def encode_value(key: str, value: Any) -> str:
    """The JSON text stored for ``value``; refuses values that would not read back the same."""
    check_json_value(key, value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"value of {key!r} is not JSON-serializable: {exc}") from exc
    size = len(text.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise ConfigError(
            f"value of {key!r} is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES} bytes"
        )
    return text


def check_json_value(key: str, value: Any) -> None:
    """Refuse what JSON cannot hold or would change: non-string dict keys, lone surrogates,
    a value that contains itself, nesting deeper than ``MAX_DEPTH``.

    Walked with an explicit stack, so no value can overflow Python's recursion limit; at most
    ``MAX_VALUE_BYTES`` items are visited (each takes at least one byte of JSON).
    """
    pending: list[tuple[Any, str, tuple[int, ...]]] = [(value, "", ())]
    visited = 0
    while pending:
        item, path, ancestors = pending.pop()
        visited += 1
        if visited > MAX_VALUE_BYTES:
            raise ConfigError(f"value of {key!r} has more than {MAX_VALUE_BYTES} items; the "
                              f"limit is {MAX_VALUE_BYTES} bytes as JSON")
        if isinstance(item, str):
            _check_unicode(f"value of {key + path!r}", item)
        elif isinstance(item, (dict, list, tuple)):
            pending.extend(_children(key, item, path, ancestors))


def _children(key: str, item: dict[Any, Any] | list[Any] | tuple[Any, ...], path: str,
              ancestors: tuple[int, ...]) -> list[tuple[Any, str, tuple[int, ...]]]:
    """The items of one container, each with its path and its containers (after the checks)."""
    where = f"{key}{path}"
    if id(item) in ancestors:
        raise ConfigError(f"value of {where!r} contains itself (a circular reference)")
    if len(ancestors) >= MAX_DEPTH:
        raise ConfigError(f"value of {key!r} is nested deeper than {MAX_DEPTH} levels "
                          f"(at {where!r})")
    inside = (*ancestors, id(item))
    if not isinstance(item, dict):
        return [(sub, f"{path}[{index}]", inside) for index, sub in enumerate(item)]
    for name in item:
        if not isinstance(name, str):
            raise ConfigError(
                f"value of {where!r} has a {type(name).__name__} dict key {name!r}; "
                "JSON objects need string keys"
            )
        _check_unicode(f"a dict key in value of {where!r}", name)
    return [(sub, f"{path}.{name}", inside) for name, sub in item.items()]


def _check_unicode(where: str, text: str) -> None:
    """Refuse a string that UTF-8 cannot encode (a lone surrogate such as ``"\\ud800"``);
    ``where`` names it, already quoted where it holds user text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{where} has a lone surrogate {text[exc.start]!r} at character {exc.start}; "
            "text must be valid Unicode"
        ) from None


def idempotency(key: object) -> str:
    """A caller's idempotency key, checked; a fresh one when the caller gave none."""
    if key is None:
        return uuid.uuid4().hex
    if not isinstance(key, str) or not _IDEMPOTENCY_RE.fullmatch(key):
        raise ConfigError("idempotency_key must be a string of letters, digits, '_', '.', ':' "
                          f"or '-', got {key!r}")
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ConfigError(f"idempotency_key is {len(key)} characters; the limit is "
                          f"{MAX_IDEMPOTENCY_KEY_LENGTH}")
    return key
