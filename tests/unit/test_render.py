"""apgcfg.render (tables, JSON, progress) and apgcfg.exit_codes, without Redis."""

from __future__ import annotations

import io
import json

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from apgcfg import exit_codes
from apgcfg.render import Lines, Progress, View, cell, emit, fields, human, table
from config_core.errors import AccessDenied, ConfigError, IntegrationError


def test_table__rows_of_different_keys__aligned_columns_dash_for_missing() -> None:
    text = table([{"connector": "discord", "status": "dead"}, {"connector": "slack",
                                                                "attempts": 3}])
    assert text.splitlines() == ["CONNECTOR  STATUS  ATTEMPTS",
                                 "discord    dead    -",
                                 "slack      -       3"]


def test_table__columns_chosen__only_those_in_that_order() -> None:
    text = table([{"a": 1, "b": {"x": [1]}, "c": "z"}], ["c", "b"])
    assert text.splitlines() == ["C  B", 'z  {"x":[1]}']


def test_cell__long_value__cut_with_ellipsis_newlines_flattened() -> None:
    assert cell("x" * 100) == "x" * 59 + "…"
    assert cell("a\nb") == "a b" and cell(None) == "-" and cell(True) == "true"


def test_human__each_shape__its_layout() -> None:
    assert human("prod-db") == "prod-db"
    assert human({"a": 1, "bb": None}) == "a:  1\nbb: -"
    assert human({"discord": {"status": "healthy"}}).splitlines() == [
        "NAME     STATUS", "discord  healthy"]
    assert human([]) == "(none)" and fields({}) == "(none)"


def test_emit__json_flag__data_as_json_else_text() -> None:
    # Given a result with its own text layout
    result = View({"key": "app.x", "same": False}, "the text")
    # When printed both ways / Then JSON is the data, text is the layout
    out = io.StringIO()
    emit(result, True, out)
    assert json.loads(out.getvalue()) == {"key": "app.x", "same": False}
    out = io.StringIO()
    emit(result, False, out)
    assert out.getvalue() == "the text\n"
    out = io.StringIO()
    emit(Lines(["{}", "secret-key"]), True, out)
    assert out.getvalue().splitlines()[-1] == "secret-key"


def test_progress__enabled__bar_counts_to_total_disabled__silent() -> None:
    out = io.StringIO()
    bar = Progress("replay", 4, True, out)
    for _ in range(4):
        bar.advance()
    bar.close()
    assert out.getvalue().rstrip().endswith("replay [" + "#" * 30 + "] 4/4")
    assert "2/4" in out.getvalue()
    quiet = io.StringIO()
    Progress("replay", 4, False, quiet).advance()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(("error", "code"), [
    (KeyError("app.x"), exit_codes.NOT_FOUND),
    (exit_codes.NotFound("version 9"), exit_codes.NOT_FOUND),
    (ConfigError("bad key"), exit_codes.USAGE),
    (AccessDenied("app.x", role="read", needed="write"), exit_codes.USAGE),
    (IntegrationError("outbox full"), exit_codes.ERROR),
    (RedisConnectionError("refused"), exit_codes.ERROR),
])
def test_exit_codes__each_error__its_documented_code(error: BaseException, code: int) -> None:
    assert exit_codes.for_error(error) == code


def test_progress__long_run__redrawn_about_200_times_ends_at_total() -> None:
    out = io.StringIO()
    bar = Progress("replay", 10_000, True, out)
    for _ in range(10_000):
        bar.advance()
    bar.close()
    draws = out.getvalue().count("\r")
    assert 150 <= draws <= 201 and out.getvalue().rstrip().endswith("10000/10000")
