"""Secret masking: what leaves config_core never carries a secret.

A key whose last segment, or a dict field whose name, looks like a secret is shown as ``"***"``.
Connector settings declared secret are masked by name too (``extra_secret_fields``), and
``redact`` removes known secret values from free text such as error messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
"""What a masked value is replaced with."""

_SECRET_NAME_RE = re.compile(
    r"(token|secret|password|passwd|api_?key|webhook_?url|private_?key|credential|auth_header"
    r"|access_?key|client_secret|signing_?key)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """True when a key segment or field name looks like it holds a secret."""
    return bool(_SECRET_NAME_RE.search(name))


def is_secret_key(key: str) -> bool:
    """True when the last segment of a dotted key looks like a secret."""
    return is_secret_name(key.rsplit(".", 1)[-1])


def mask_value(value: Any, extra_secret_fields: Iterable[str] = ()) -> Any:
    """Return ``value`` with every secret-looking nested field replaced by ``MASK``."""
    extra = frozenset(extra_secret_fields)
    return _mask(value, extra)


def _mask(value: Any, extra: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            name: _mask_all(item) if is_secret_name(name) or name in extra else _mask(item, extra)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_mask(item, extra) for item in value]
    return value


def _mask_all(value: Any) -> Any:
    """Mask every leaf of a secret field, keeping its shape (dict keys stay readable)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {name: _mask_all(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_mask_all(item) for item in value]
    return MASK


def mask_for_key(key: str, value: Any, extra_secret_fields: Iterable[str] = ()) -> Any:
    """Mask ``value`` as stored under ``key``: all of it when the key itself is secret."""
    if is_secret_key(key):
        return _mask_all(value)
    return mask_value(value, extra_secret_fields)


def secret_strings(value: Any, extra_secret_fields: Iterable[str] = ()) -> set[str]:
    """Every string that masking would hide in ``value``; used to scrub free text."""
    found: set[str] = set()
    extra = frozenset(extra_secret_fields)

    def walk(item: Any, secret: bool) -> None:
        if isinstance(item, dict):
            for name, sub in item.items():
                walk(sub, secret or is_secret_name(name) or name in extra)
        elif isinstance(item, list):
            for sub in item:
                walk(sub, secret)
        elif secret and isinstance(item, str) and item:
            found.add(item)

    walk(value, False)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret (and the path part of secret URLs) in ``text`` with ``MASK``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) < 4:
            continue
        text = text.replace(secret, MASK)
        path = _url_path(secret)
        if path:
            text = text.replace(path, MASK)
    return text


def _url_path(secret: str) -> str | None:
    """The path of a URL secret: urllib3 errors quote only the path, not the whole URL."""
    match = re.match(r"^[a-z][a-z0-9+.-]*://[^/]+(/.{4,})$", secret, re.IGNORECASE)
    return match.group(1) if match else None
