"""``python -m bench.profile``: where a worker's time goes while it delivers a burst.

Queues changes routed to a loopback Discord (``--deliveries``) or to Splunk + New Relic + a
Slack digest (``--fanout``), starts a real worker and samples it, main process (the relay) and
pool children, with py-spy (``pip install -e '.[profile]'``) until the burst is delivered. Prints
the functions that hold the most samples, by their own time and including what they call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import settings, workerside
from bench.run import LOOPBACK
from tests.fakes.discord import FakeDiscord
from tests.integration.workerproc import WorkerProcess

TOP = 25
"""Rows printed per table."""

RATE_HZ = 200
"""py-spy samples per second."""


def _start_spy(worker: WorkerProcess, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "--pid", str(worker.proc.pid), "--subprocesses",
                             "--rate", str(RATE_HZ), "--format", "raw", "--output", str(out),
                             "--nonblocking", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


ROOT = str(Path(__file__).resolve().parents[1])
PACKAGES = {"workers", "config_core", "connectors", "apgcfg", "capabilities"}
"""The project's own code (py-spy names files relative to their ``sys.path`` entry)."""


def _name(frame: str) -> tuple[str, bool]:
    """``function (file)`` and whether the file is the project's own."""
    if " (" not in frame:
        return frame, False
    function, where = frame.split(" (", 1)
    path = where.split(":")[0].rstrip(")")
    relative = path.removeprefix(ROOT + "/")
    own = relative.split("/", 1)[0] in PACKAGES
    return f"{function} ({path.rsplit('/', 1)[-1]})", own


def summarize(raw: Path) -> str:
    """Own and inclusive sample counts per function, from py-spy's collapsed stacks (only
    samples holding the GIL: CPU, not waiting)."""
    own: Counter[str] = Counter()
    project: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        names = [_name(frame) for frame in stack.split(";")]
        total += count
        own[names[-1][0]] += count
        for name in {name for name, mine in names if mine}:
            project[name] += count
    lines = [f"{total} samples holding the GIL", "", "own time:"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in own.most_common(TOP)]
    lines += ["", "the project's functions, including what they call:"]
    lines += [f"  {n * 100 / total:5.1f}%  {name}" for name, n in project.most_common(TOP)]
    return "\n".join(lines)


async def _profile(url: str, count: int, fanout: bool, out: Path, log_dir: Path) -> None:
    spy: list[subprocess.Popen[bytes]] = []

    def attach(worker: WorkerProcess) -> None:
        if not spy:
            spy.append(_start_spy(worker, out))

    try:
        if fanout:
            await workerside.fanout_run(url, count, log_dir, attach)
        else:
            with FakeDiscord() as fake:
                await workerside.delivery_run(url, count, log_dir, fake,
                                              lambda worker, _: attach(worker))
    finally:
        if spy:  # the worker has stopped: py-spy writes what it sampled and ends
            try:
                spy[0].wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy[0].send_signal(signal.SIGINT)
                spy[0].wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=2000,
                        help="changes routed to the webhook (default 2000)")
    parser.add_argument("--keep", type=Path, metavar="FILE",
                        help="also copy py-spy's collapsed stacks to FILE")
    parser.add_argument("--fanout", action="store_true",
                        help="profile the fan-out to Splunk + New Relic + Slack instead")
    args = parser.parse_args(argv)
    os.environ.pop("CELERY_TASK_ALWAYS_EAGER", None)
    os.environ.setdefault("APGCFG_ALLOWED_NETWORKS", LOOPBACK)
    with tempfile.TemporaryDirectory(prefix="apgcfg-profile-") as tmp:
        out = Path(tmp) / "stacks.txt"
        asyncio.run(_profile(settings.redis_url(), args.deliveries, args.fanout, out, Path(tmp)))
        if not out.exists():
            print("py-spy wrote no samples (is it installed: pip install -e '.[profile]'?)",
                  file=sys.stderr)
            return 1
        if args.keep:
            shutil.copyfile(out, args.keep)
        print(summarize(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
