"""The results as text: numbers to the precision their size calls for, budgets, the published
results and the verdict of ours against them (``benchmarks/results_table.py``'s tables)."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.published import MEASURES, Published, others


def number(value: float, like: float | None = None) -> str:
    """``value`` to the precision the size of ``like`` (default: ``value``) calls for."""
    decimals = 0 if abs(value if like is None else like) >= 1000 else 1
    return f"{value:,.{decimals}f}"


def mean_std(mean: float, std: float) -> str:
    return f"{number(mean)} ± {number(std, like=mean)}"


def steps_text(steps: int) -> str:
    return f"{steps / 1e6:g}M" if steps >= 1_000_000 else f"{steps / 1e3:g}k"


def published_text(result: Published, steps: int) -> str:
    """``mean ± std``, with the budget where it is not ``steps``."""
    text = mean_std(result.mean, result.std)
    return text if result.steps == steps else f"{text} ({steps_text(result.steps)})"


def verdict(
    ours: dict[str, Any] | None, zoo: Published | None, env_id: str = "", algo: str = "", steps: int = 0
) -> str:
    """Whether our final evaluation (``ours``: a summary with ``eval_mean``) reaches the zoo's
    mean, or its spread (its std over evaluation episodes).

    Against the first other result at the same budget (``others``: CleanRL's or Tianshou's) too
    where the zoo publishes nothing, which is what a user can expect instead, or where ours falls
    below the zoo's spread (several entries take those others' settings). That one is set beside
    the same measure of ours (``MEASURES``), named with its value; the final evaluation where
    the summary lacks it."""
    if ours is None:
        return "not run yet"
    other = next(((who, result) for who, result in others(env_id, algo) if result.steps == steps), None)
    judged = _against(ours["eval_mean"], zoo, "the zoo's") if zoo is not None else "no zoo result"
    if other is not None and (zoo is None or judged.startswith("below")):
        who, result = other
        key, measure = MEASURES[who]
        if not math.isfinite(ours.get(key, math.nan)):  # SB3's summaries; runs without the measure
            key, measure = "eval_mean", "final evaluation"
        judged += f"; {measure} {number(ours[key])} " + _against(ours[key], result, f"{who}'s")
    return judged


def _against(mean: float, result: Published, whose: str) -> str:
    if mean >= result.mean:
        return f"reaches {whose} mean"
    return f"within {whose} spread" if mean >= result.mean - result.std else f"below {whose} spread"


def others_text(env_id: str, algo: str, steps: int) -> str:
    return "; ".join(f"{who} {published_text(result, steps)}" for who, result in others(env_id, algo)) or "-"


def seeds_text(summary: dict[str, Any]) -> str:
    """``mean ± std (n seeds)`` of a summary's final evaluations (the mean alone for one seed)."""
    n = len(summary["seeds"])
    if n == 1:
        return f"{number(summary['eval_mean'])} (1 seed)"
    return f"{mean_std(summary['eval_mean'], summary['eval_std'])} ({n} seeds)"
