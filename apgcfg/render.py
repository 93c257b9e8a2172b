"""How commands print: JSON for scripts (``--json``), tables and ``key: value`` lines for people.

A command handler returns plain data (dicts, lists, scalars). ``emit`` prints it as JSON with
``--json``; otherwise as text: a list of dicts becomes a table, a dict of dicts a table with a
``name`` column, a flat dict ``key: value`` lines, a string itself. A handler that wants a
particular layout returns ``View(data, text)``: ``data`` is what ``--json`` prints, ``text``
what a person reads. ``table`` and ``fields`` build such text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

MAX_CELL = 60
"""Longest cell of a table before it is cut with an ellipsis (``--json`` never cuts)."""


@dataclass
class View:
    """A result with its own human layout."""

    data: Any
    text: str


class Lines(list[str]):
    """A result printed as plain lines, also with ``--json`` (the last line alone, for
    scripts: e.g. a new API key)."""


def emit(result: Any, as_json: bool, out: TextIO | None = None) -> None:
    """Print ``result`` as JSON or as text."""
    out = out or sys.stdout
    if isinstance(result, Lines):
        print("\n".join(result), file=out)
    elif as_json:
        data = result.data if isinstance(result, View) else result
        print(to_json(data), file=out)
    else:
        text = result.text if isinstance(result, View) else human(result)
        if text:
            print(text, file=out)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def human(data: Any) -> str:
    """The generic text layout of ``data``."""
    if isinstance(data, str):
        return data
    if isinstance(data, Mapping):
        if data and all(isinstance(v, Mapping) for v in data.values()):
            return table([{"name": k, **v} for k, v in data.items()])
        return fields(data)
    if isinstance(data, Sequence) and all(isinstance(row, Mapping) for row in data):
        return table(data) if data else "(none)"
    return cell(data, limit=None)


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None,
          headers: Sequence[str] | None = None) -> str:
    """Rows as an aligned text table; ``columns`` picks and orders them (default: every key,
    in first-seen order)."""
    rows = list(rows)
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    heads = list(headers or [c.upper() for c in columns])
    body = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in [heads, *body]) for i in range(len(columns))]
    return "\n".join("  ".join(text.ljust(w) for text, w in zip(line, widths, strict=True))
                     .rstrip() for line in [heads, *body])


def fields(data: Mapping[str, Any]) -> str:
    """``key: value`` lines, keys aligned."""
    if not data:
        return "(none)"
    width = max(len(str(key)) for key in data)
    return "\n".join(f"{str(key) + ':':<{width + 1}} {cell(value, limit=None)}"
                     for key, value in data.items())


def cell(value: Any, limit: int | None = MAX_CELL) -> str:
    """One value as text: ``-`` for None, strings as they are, the rest as compact JSON."""
    if value is None:
        text = "-"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = json.dumps(value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    text = text.replace("\n", " ")
    return text if limit is None or len(text) <= limit else text[:limit - 1] + "…"


def when(epoch_s: float | None) -> str:
    """An epoch time as ``2026-12-05 10:00:00Z`` (``-`` when None)."""
    if not epoch_s:
        return "-"
    return datetime.fromtimestamp(float(epoch_s), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Progress:
    """A one-line progress bar on stderr: ``replay [#####.....] 50/100``; silent when off."""

    WIDTH = 30

    def __init__(self, label: str, total: int, enabled: bool, out: TextIO | None = None):
        self.label, self.total, self.enabled = label, total, enabled and total > 0
        self.out = out or sys.stderr
        self.done = 0

    def advance(self, step: int = 1) -> None:
        self.done += step
        every = max(1, self.total // 200)  # at most about 200 redraws, however long the run
        if self.enabled and (self.done % every == 0 or self.done >= self.total):
            filled = self.WIDTH * self.done // self.total
            bar = "#" * filled + "." * (self.WIDTH - filled)
            print(f"\r{self.label} [{bar}] {self.done}/{self.total}", end="", file=self.out,
                  flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=self.out, flush=True)
