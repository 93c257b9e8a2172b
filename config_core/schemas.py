"""``integrations.schemas``: JSON Schemas (key glob → schema) that values must satisfy.

The service keeps the compiled schemas with the version it read; the write script refuses a
write checked against an older version, so a value is never stored unchecked.

References stay inside each schema (``"$ref": "#/$defs/port"``): a remote one (``http://``,
``file:``, another document) is refused when the schemas are stored, and validation runs with
a registry that cannot retrieve anything, so no check ever reaches the network.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators
from referencing import Registry
from referencing.exceptions import NoSuchResource, Unresolvable

from config_core.errors import ConfigError
from config_core.masking import is_secret_key, redact, secret_strings
from config_core.routing import matches

SCHEMAS_KEY = "integrations.schemas"
"""Where the schemas live."""

REFERENCE_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
"""Keywords whose value points at another schema."""


def _retrieve_nothing(uri: str) -> Any:
    """The registry's retriever: a schema outside the stored one is never fetched."""
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs field, unseen by mypy


# attrs strips the leading underscore of the private ``_retrieve`` field; mypy does not know that.
NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_retrieve_nothing)  # type: ignore[call-arg]
"""Resolves only references inside a schema; anything else is unresolvable, not fetched."""


def validate_schemas(value: Any) -> None:
    """Refuse an ``integrations.schemas`` value that is not glob → valid JSON Schema."""
    if not isinstance(value, dict):
        raise ConfigError("integrations.schemas must be a dict of key pattern → JSON Schema")
    for pattern, schema in value.items():
        if not isinstance(schema, (dict, bool)):
            raise ConfigError(f"integrations.schemas[{pattern!r}] must be a JSON Schema object")
        try:
            validators.validator_for(schema).check_schema(schema)
        except schema_errors.SchemaError as exc:
            raise ConfigError(
                f"integrations.schemas[{pattern!r}] is not a valid JSON Schema: {exc.message}"
            ) from exc
        remote = _remote_reference(schema)
        if remote is not None:
            raise ConfigError(
                f"integrations.schemas[{pattern!r}] has a remote reference {remote!r}; only "
                "references inside the schema ('#/...') are allowed, nothing is fetched")


def _remote_reference(schema: Any) -> str | None:
    """The first reference that leaves ``schema`` (walked without recursion), or None."""
    pending = [schema]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for name, sub in item.items():
                if name in REFERENCE_KEYWORDS and isinstance(sub, str) and not sub.startswith("#"):
                    return sub
                pending.append(sub)
        elif isinstance(item, list):
            pending.extend(item)
    return None


class SchemaError(ConfigError):
    """A value was refused by a schema in ``integrations.schemas``."""

    def __init__(self, message: str, pattern: str) -> None:
        super().__init__(message)
        self.pattern = pattern


class Schemas:
    """The compiled schemas of one namespace, as of ``version``."""

    def __init__(self) -> None:
        self.version: int | None = None
        self._checks: list[tuple[str, Any]] = []

    def load(self, stored_json: str | None, version: int) -> None:
        """Compile the stored schemas (``None``: there are none)."""
        schemas = json.loads(stored_json) if stored_json else {}
        self._checks = [(pattern, validators.validator_for(schema)(schema, registry=NO_RETRIEVAL))
                        for pattern, schema in schemas.items()]
        self.version = version

    def check(self, key: str, value: Any) -> None:
        """Raise ``SchemaError`` if ``value`` breaks a schema whose pattern matches ``key``."""
        for pattern, validator in self._checks:
            if not matches(key, pattern):
                continue
            try:
                error = schema_errors.best_match(validator.iter_errors(value))
            except Unresolvable as exc:
                raise SchemaError(
                    f"value of {key!r} cannot be checked: the schema for {pattern!r} has a "
                    f"reference that cannot be resolved ({exc.ref!r}); nothing is fetched",
                    pattern) from None
            if error is not None:
                raise SchemaError(_describe(key, value, pattern, error), pattern)


def _describe(key: str, value: Any, pattern: str, error: Any) -> str:
    where = error.json_path
    if is_secret_key(key):
        detail = f"the value breaks '{error.validator}' at {where} (value hidden)"
    else:
        detail = redact(f"{error.message} (at {where})", secret_strings(value))
    return f"value of {key!r} does not match the schema for {pattern!r}: {detail}"
