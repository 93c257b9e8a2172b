"""Declared connector settings, and the one function that validates a config against them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from config_core.errors import ConfigError
from connectors import egress

Check = Callable[[Any], "str | None"]
"""A validator: returns an error text for a bad value, or None when the value is fine."""

ENV_REF_RE = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}$")
"""A secret kept out of Redis: ``${env:NAME}`` is resolved from the worker's environment."""

MAX_NUMBER = 10**12
"""Largest magnitude of a number setting unless the setting declares its own ``minimum`` /
``maximum``: far beyond any count or interval, well inside what a float holds exactly."""


@dataclass(frozen=True)
class Setting:
    """One setting a connector accepts."""

    name: str
    kind: type | tuple[type, ...] = str
    required: bool = False
    secret: bool = False
    default: Any = None
    check: Check | None = None
    doc: str = ""
    minimum: float = -MAX_NUMBER
    """Smallest accepted value of a number setting."""
    maximum: float = MAX_NUMBER
    """Largest accepted value of a number setting."""
    aliases: tuple[str, ...] = ()
    """Other names a field key may use for this setting: ``integrations.zendesk.api_key``
    writes ``api_token`` (the guide's rotation loop sets ``api_key`` on every connector)."""

    def validate(self, where: str, value: Any) -> None:
        """Raise ``ConfigError`` naming ``where`` when ``value`` does not fit this setting."""
        if isinstance(value, str) and ENV_REF_RE.match(value):
            return
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{where}.{self.name} must be {_kind_name(kinds)}, got a bool")
        if not isinstance(value, kinds):
            raise ConfigError(
                f"{where}.{self.name} must be {_kind_name(kinds)}, got {type(value).__name__}"
            )
        problem = self._out_of_range(value) or (self.check(value) if self.check else None)
        if problem:
            raise ConfigError(f"{where}.{self.name} {problem}")


    def _out_of_range(self, value: Any) -> str | None:
        """Why a number is outside ``minimum``..``maximum`` (NaN included); None if inside."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if self.minimum <= value <= self.maximum:
            return None
        return f"must be between {self.minimum:g} and {self.maximum:g}"


def _kind_name(kinds: Iterable[type]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a dict"}
    return " or ".join(names.get(kind, kind.__name__) for kind in kinds)


def validate_config(
    where: str, settings: Iterable[Setting], config: Any, *, partial: bool = False
) -> dict[str, Any]:
    """Check ``config`` against ``settings``; return it with defaults filled in.

    ``partial`` allows required settings to be missing (a config being built field by field).
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where} must be a dict of settings, got {type(config).__name__}")
    declared = {setting.name: setting for setting in settings}
    unknown = sorted(set(config) - set(declared))
    if declared and unknown:
        raise ConfigError(f"{where} has unknown setting(s) {unknown}; known: {sorted(declared)}")
    for name, setting in declared.items():
        if name in config and config[name] is not None:
            setting.validate(where, config[name])
        elif setting.required and not partial:
            raise ConfigError(f"{where}.{name} is required")
    return with_defaults(settings, config)


def with_defaults(settings: Iterable[Setting], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every unset declared setting at its default."""
    merged = {s.name: s.default for s in settings if s.default is not None}
    merged.update({k: v for k, v in config.items() if v is not None})
    return merged


def missing_required(settings: Iterable[Setting], config: Mapping[str, Any]) -> list[str]:
    """Names of required settings that ``config`` lacks."""
    return [s.name for s in settings if s.required and config.get(s.name) in (None, "")]


# Validators shared by connectors ------------------------------------------------------------


def http_url(value: str) -> str | None:
    """An https URL to a public host; internal hosts (and http://) only where allowed.

    See ``connectors.egress``: loopback, private, link-local and the like are refused unless
    ``APGCFG_ALLOWED_NETWORKS`` allows them; plain http:// only for such allowed hosts.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an https:// URL"
    problem = egress.refusal(parts.hostname)
    if problem:
        return problem
    if parts.scheme == "http" and not egress.is_internal_allowed(parts.hostname):
        return (f"must be an https:// URL (http:// only for internal hosts that "
                f"{egress.ALLOWED_NETWORKS_ENV} allows)")
    return None


def list_of_str(value: list[Any]) -> str | None:
    """A list of non-empty strings."""
    if all(isinstance(item, str) and item for item in value):
        return None
    return "must be a list of non-empty strings"


def dict_of_urls(value: dict[str, Any]) -> str | None:
    """A dict whose values are all valid URLs (``http_url``), or ``${env:NAME}`` references."""
    for name, url in value.items():
        if not isinstance(url, str):
            return f"[{name!r}] must be an https:// URL"
        problem = None if ENV_REF_RE.match(url) else http_url(url)
        if problem:
            return f"[{name!r}] {problem}"
    return None


RATE_LIMIT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
"""Celery's rate format: ``"50/m"`` is 50 tasks a minute (``s``, ``m`` or ``h``)."""

RATE_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0}


def rate_per_s(value: str | float | int | None) -> float:
    """Tasks per second of a rate limit (``"50/m"`` → 0.833, a number is per second);
    0 means no limit. ``ValueError`` for anything else."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 <= value < MAX_NUMBER:
            raise ValueError(f"rate {value!r} out of range")
        return float(value)
    match = RATE_LIMIT_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"rate {value!r} is not like '50/m'")
    return float(match.group(1)) / RATE_UNITS_S[match.group(2)]


def rate_check(value: str | float | int) -> str | None:
    """A rate as Celery takes it: ``"N/s"``, ``"N/m"``, ``"N/h"`` or a number per second
    (0 turns the limit off)."""
    try:
        rate_per_s(value)
    except ValueError:
        return ("must be a rate such as '1/s', '50/m' or '1000/h', or a number of deliveries "
                "per second (0: no limit)")
    return None


RATE_LIMIT = Setting(
    "rate_limit", kind=(str, int, float), check=rate_check, minimum=0,
    doc="How many deliveries to this connector a worker starts: '1/s', '50/m', '1000/h', or a "
        "number per second; 0 for no limit (see Rate limits).")
"""The setting every connector accepts, besides its own (see ``BaseConnector.rate_limit``)."""


def max_length(limit: int) -> Check:
    """A string of at most ``limit`` characters."""

    def check(value: str) -> str | None:
        return None if len(value) <= limit else f"must be at most {limit} characters"

    return check
