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


def encode_value(key: str, value: Any) -> str:
    """The JSON text stored for ``value``; refuses values that would not read back the same."""
    _check_plain_json(key, value)
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


def _check_plain_json(key: str, value: Any, path: str = "") -> None:
    """Refuse dict keys that JSON would silently turn into strings."""
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                where = f"{key}{path}"
                raise ConfigError(
                    f"value of {where!r} has a {type(name).__name__} dict key {name!r}; "
                    "JSON objects need string keys"
                )
            _check_plain_json(key, item, f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain_json(key, item, f"{path}[{index}]")


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
