"""``make faults``: run the fault scenarios on real processes and write docs/reliability.md.

    python -m tests.faults.run [--changes 2000] [--only NAME ...] [--no-write]

Exits 1 when any scenario lost a delivery, sent one twice, or let a secret out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.harness import Counts
from tests.faults.scenarios import ALL

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "reliability.md"

os.environ.setdefault("APGCFG_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = args.only or list(ALL)
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        print(f"faults: unknown scenario(s) {unknown}; known: {list(ALL)}", file=sys.stderr)
        return 2
    results = [_one(name, args.changes) for name in names]
    if not args.no_write:
        REPORT.write_text(report(results, args.changes))
        print(f"faults: wrote {REPORT.relative_to(ROOT)}")
    return 0 if all(r.ok for r in results) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.run")
    parser.add_argument("--changes", type=int, default=2000, help="changes per scenario")
    parser.add_argument("--only", nargs="*", metavar="NAME", help=f"some of {list(ALL)}")
    parser.add_argument("--no-write", action="store_true", help="do not write the report")
    return parser


def _one(name: str, changes: int) -> Counts:
    print(f"faults: {name} ({changes} changes) ...", flush=True)
    workdir = tempfile.mkdtemp(prefix=f"faults-{name}-")
    counts = asyncio.run(ALL[name](Path(workdir), changes))
    print(f"faults: {name}: {line(counts)}", flush=True)
    if counts.ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"faults: {name}: worker logs kept in {workdir}", flush=True)
    return counts


def line(c: Counts) -> str:
    return (f"{c.delivered} delivered, {c.dead} dead with a reason, {c.lost} lost, "
            f"{c.duplicates} duplicates, {len(c.secrets)} secrets found, {c.seconds} s")


def report(results: list[Counts], changes: int) -> str:
    """docs/reliability.md."""
    rows = "\n".join(
        f"| {c.scenario} | {c.deliveries} | {c.delivered} | {c.dead} | {c.lost} | "
        f"{c.duplicates} | {len(c.secrets)} | {c.seconds} | {_figures(c)} |" for c in results)
    notes = "\n".join(f"- **{c.scenario}**: {c.note}." + _reasons(c) for c in results)
    found = "\n".join(f"- {c.scenario}: {s}" for c in results for s in c.secrets) or "- none"
    return f"""# Reliability: the fault suite

`make faults` (`python -m tests.faults.run`) runs each scenario on real processes: a Redis
server of its own, real `celery -A workers worker` processes (4 pool processes), loopback fakes
of Discord and Slack. Each scenario writes {changes} changes routed to both (so
{changes * 2} deliveries; every 20th change is to a secret key), injects its fault, and waits
up to 4 minutes for every delivery to end. What became of each (event, connector) is counted at
the fakes and in the ledger:

- **delivered**: the ledger says delivered and the vendor got it exactly once;
- **dead**: the ledger says dead, with the reason (grouped below);
- **lost**: not over in time, dead without a reason, or delivered without reaching the vendor;
- **duplicates**: the vendor got it more than once;
- **secrets**: the secret value written under secret keys, or a webhook token, seen in a
  request the fakes received (body and headers), a worker's log, a ledger row, or a task's
  arguments as Flower sees them (task-received events).

Measured on {os.cpu_count()} cores ({platform.machine()}), {time.strftime("%Y-%m-%d")}.

Figures: *discord p50/p99 ms* is routed-to-delivered of the burst's Discord deliveries (it
includes the wait behind the whole burst); *probe p50/max ms* is set_config-to-Discord of 20
changes routed to Discord alone, written one at a time during the burst: compare the
baseline's with the never-answering vendor's; *task args scanned* counts the task arguments
the secret scan read.

| scenario | deliveries | delivered | dead | lost | duplicates | secrets | seconds | figures |
|---|---|---|---|---|---|---|---|---|
{rows}

## What each scenario does, and why the dead are dead

{notes}

## Secrets found

{found}

## How it works

Each scenario is a function in `tests/faults/scenarios.py`; `tests/faults/harness.py` starts the
processes, writes the changes (retrying a write whose outcome is unknown with its idempotency
key, as a client should), and counts. Every wait is bounded, so a scenario that does not
recover ends with its deliveries counted as lost rather than hanging. The quick scenarios
({", ".join(name for name in ("outbox_deleted", "rate_limit_storm", "pool_child_sigkill"))})
also run in `make test`, with 60 changes (`tests/integration/test_faults_quick.py`).
"""


def _figures(c: Counts) -> str:
    return ", ".join(f"{name} {value}" for name, value in c.figures.items())


def _reasons(c: Counts) -> str:
    if not c.dead_reasons:
        return ""
    return " Dead: " + "; ".join(f"{n} × {reason}" for reason, n in c.dead_reasons.items()) + "."


if __name__ == "__main__":
    sys.exit(main())
