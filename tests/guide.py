"""The user's guide as tests read it: its code blocks, found by heading, and a way to run them.

``tests/data/enterprise-connectors-guide.md`` is a copy of the guide. ``snippets("Approval
Workflows")`` returns the code blocks under that heading (up to the next heading of the same or
a higher level), dedented as a user would paste them. ``run_snippets`` runs code in a fresh
Python process as ``__main__`` (a pasted script), with top-level ``await`` allowed as in the
guide and ``service = ConfigService()`` built from the environment (``CONFIG_REDIS_URL``, ...).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "tests" / "data" / "enterprise-connectors-guide.md"
README = ROOT / "README.md"
RUN_TIMEOUT_S = 60.0

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")

PRELUDE = """\
import asyncio, json, logging, os
from datetime import datetime
from typing import Any, Dict
import httpx
from config_core import ConfigService, ConfigError, IntegrationError
logger = logging.getLogger("guide")
service = ConfigService()
"""
"""What a script that pastes the guide's snippets has above them: the guide's imports and
its ``service``. Everything else comes from the guide."""

RUNNER = """\
import ast, asyncio, json, sys, types
main = sys.modules["__main__"]
def run(source):
    code = compile(source, "<guide>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, main.__dict__)
    if asyncio.iscoroutine(result):
        main.__dict__["_loop"].run_until_complete(result)
main.__dict__["_loop"] = asyncio.new_event_loop()
asyncio.set_event_loop(main.__dict__["_loop"])
for part in json.load(open(sys.argv[1])):
    run(part)
"""


@dataclass(frozen=True)
class Block:
    heading: str
    language: str
    code: str


def blocks(path: Path = GUIDE) -> list[tuple[list[str], Block]]:
    """Every fenced block of the guide with the headings it sits under (outermost first)."""
    found: list[tuple[list[str], Block]] = []
    trail: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        heading, fence = HEADING.match(lines[i]), FENCE.match(lines[i])
        if heading:
            level = len(heading.group(1))
            trail = [t for t in trail if t[0] < level] + [(level, heading.group(2))]
        elif fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            code = textwrap.dedent("\n".join(lines[i + 1:end])) + "\n"
            names = [name for _, name in trail]
            found.append((names, Block(names[-1], fence.group(2), code)))
            i = end
        i += 1
    return found


def snippets(heading: str, language: str = "python", path: Path = GUIDE) -> list[str]:
    """The code blocks of ``language`` under ``heading``; fails when there are none."""
    codes = [b.code for names, b in blocks(path)
             if heading in names and b.language == language]
    if not codes:
        raise LookupError(f"no {language} block under the guide's heading {heading!r}")
    return codes


def snippet(heading: str, index: int = 0, language: str = "python", path: Path = GUIDE) -> str:
    """One code block under ``heading`` (the first by default)."""
    return snippets(heading, language, path)[index]


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str

    def last_json(self) -> Any:
        """What the script printed last as one JSON line (the test's own report)."""
        return json.loads(self.stdout.strip().splitlines()[-1])


def run_snippets(*parts: str, env: dict[str, str], cwd: Path,
                 timeout_s: float = RUN_TIMEOUT_S) -> Outcome:
    """Run the prelude then ``parts`` in order, as one ``__main__`` script in a new process.

    ``env`` is laid over this process's environment (the guide's variables: where Redis is,
    the secrets; eager mode and ``ZENDESK_API_TOKEN`` only when given). A snippet's exception
    ends the script with a non-zero code and its traceback.
    """
    script = cwd / "guide_parts.json"
    script.write_text(json.dumps([PRELUDE, *parts]), encoding="utf-8")
    full_env = {name: value for name, value in os.environ.items()
                if name not in ("CELERY_TASK_ALWAYS_EAGER", "ZENDESK_API_TOKEN")}
    full_env.update({"PYTHONPATH": str(ROOT), **env})
    done = subprocess.run([sys.executable, "-c", RUNNER, str(script)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    return Outcome(done.returncode, done.stdout, done.stderr)
