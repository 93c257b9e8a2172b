"""Every figure with a goal, judged MET or NOT MET, and the summary table of one run.

Each phase of ``bench.run`` returns its ``Goal`` rows; the run prints them together at the end,
so every figure of the run is in one place with its goal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    """One figure: its value as shown, its goal, and whether the goal is met."""

    figure: str
    shown: str
    goal: str
    met: bool
    limit: str = ""
    """When not met: what the run measured that limits it."""

    @property
    def verdict(self) -> str:
        return "MET" if self.met else "NOT MET"


def at_least(figure: str, value: float, target: float, unit: str = "x", limit: str = "",
             digits: int = 2) -> Goal:
    """A goal ``value >= target`` (NaN never meets it)."""
    met = not math.isnan(value) and value >= target
    return Goal(figure, f"{value:.{digits}f}{unit}", f">= {target:g}{unit}", met,
                "" if met else limit)


def below(figure: str, value: float, target: float, unit: str = "", limit: str = "",
          digits: int = 1) -> Goal:
    """A goal ``value < target`` (NaN never meets it)."""
    met = not math.isnan(value) and value < target
    return Goal(figure, f"{value:.{digits}f}{unit}", f"< {target:g}{unit}", met,
                "" if met else limit)


def goal_line(goal: Goal) -> str:
    """``  <figure>  <value>   goal <op> <target>: MET`` (the form every phase prints)."""
    return f"  {goal.figure:<44} {goal.shown:>10}   goal {goal.goal}: {goal.verdict}"


def summary_text(goals: list[Goal]) -> str:
    """All goals of the run, then what limits those not met."""
    lines = [goal_line(goal) for goal in goals]
    missed = [goal for goal in goals if not goal.met and goal.limit]
    if missed:
        lines.append("")
        lines.extend(f"  NOT MET {goal.figure}: {goal.limit}" for goal in missed)
    met = sum(goal.met for goal in goals)
    lines.append(f"\n  {met} of {len(goals)} goals met")
    return "\n".join(lines)
