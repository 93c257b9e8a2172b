"""docs/connectors.md is generated from the declared settings (``make docs``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import docs, registry
from connectors.slack import SlackConnector

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"


def test_connectors_md__committed__matches_what_make_docs_writes() -> None:
    expected = docs.render(docs.SOURCE.read_text(encoding="utf-8"))
    assert COMMITTED.read_text(encoding="utf-8") == expected, (
        "docs/connectors.md is stale: run `make docs` (python -m connectors.docs > "
        "docs/connectors.md)")


def test_docs_source__every_builtin_connector__has_its_settings_marker() -> None:
    source = docs.SOURCE.read_text(encoding="utf-8")
    for name in registry.BUILTIN:
        assert f"<!-- settings: {name} -->" in source
    assert "<!-- rate-limits -->" in source


def test_render__a_default_changes__output_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    source = docs.SOURCE.read_text(encoding="utf-8")
    before = docs.render(source)
    monkeypatch.setattr(SlackConnector, "rate_limit", "7/m")
    after = docs.render(source)
    assert before != after and "| `slack` | `7/m` |" in after


def test_render__unknown_connector_marker__value_error() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        docs.render("<!-- settings: nosuch -->\n")
