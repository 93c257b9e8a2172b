"""Keys and values are checked before anything is written."""

from __future__ import annotations

import pytest

from config_core.errors import ConfigError
from config_core.validation import MAX_KEY_LENGTH, MAX_VALUE_BYTES, check_key, encode_value


@pytest.mark.parametrize("key", ["a", "app.database.host", "A_b-9.c", "x" * MAX_KEY_LENGTH])
def test_check_key__valid__returned(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(("key", "message"), [
    ("", "empty"), ("app..host", "invalid"), (".app", "invalid"), ("app.", "invalid"),
    ("app host", "invalid"), ("app/host", "invalid"), ("ключ", "invalid"),
    ("x" * (MAX_KEY_LENGTH + 1), "limit is 256"), (42, "must be a string"),
])
def test_check_key__invalid__config_error_names_problem(key: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_key(key)


@pytest.mark.parametrize(("value", "message"), [
    ({1, 2}, "not JSON-serializable"), (float("nan"), "not JSON-serializable"),
    (object(), "not JSON-serializable"), ({1: "a"}, "int dict key"),
    ({"a": [{"b": {2: 3}}]}, r"a\[0\]\.b"), ("x" * MAX_VALUE_BYTES, "limit is 65536"),
])
def test_encode_value__invalid__config_error(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        encode_value("app.k", value)


def test_encode_value__multibyte__measured_in_utf8_bytes() -> None:
    # Given a value under the limit in characters but over it in UTF-8 bytes
    value = "é" * (MAX_VALUE_BYTES // 2 + 10)
    with pytest.raises(ConfigError, match="bytes"):
        encode_value("app.k", value)
