"""Comparisons over seeds: mean and standard deviation of an accuracy, and the paired difference
of two arms scored on the same held-out problems, with a 95 % interval.

    a[s][i], b[s][i]: arm A's and arm B's score (1 right, 0 wrong, or a mean over samples) on
    held-out problem i after training with seed s. The same problems, the same seeds.

The difference is d = mean over seeds and problems of a - b. Its interval counts two sources of
noise, as the variance of a two-level mean does:

- the problems (the held-out set is a sample of the task): the variance over problems of the
  seed-averaged difference, over the number of problems;
- the training runs (another seed trains another model): the variance over seeds of the
  per-seed mean difference, over the number of seeds.

    d +- 1.96 * sqrt(var_problems / P + var_seeds / S)

With one seed the second term is unknown and left out (the interval then says nothing about
training noise, and `seeds` in the result says so). A claim is made only when the interval
excludes 0 (`excludes_zero`). Pure Python.
"""

from __future__ import annotations

import math
import statistics

Z95 = 1.959963984540054


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_difference(a: list[list[float]], b: list[list[float]]) -> dict:
    """A - B over the same seeds and problems (see the module's docstring)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired arms need the same seeds (got {len(a)} and {len(b)})")
    problems = len(a[0])
    for sa, sb in zip(a, b):
        if len(sa) != problems or len(sb) != problems:
            raise ValueError("paired arms need the same held-out problems for every seed "
                             f"(got {len(sa)} and {len(sb)}, expected {problems})")
    if problems == 0:
        raise ValueError("no held-out problems to compare")
    seeds = len(a)
    per_seed = [statistics.mean(x - y for x, y in zip(sa, sb)) for sa, sb in zip(a, b)]
    per_problem = [statistics.mean(a[s][i] - b[s][i] for s in range(seeds)) for i in range(problems)]
    difference = statistics.mean(per_seed)
    var_problems = statistics.variance(per_problem) if problems > 1 else 0.0
    var_seeds = statistics.variance(per_seed) if seeds > 1 else 0.0
    half = Z95 * math.sqrt(var_problems / problems + var_seeds / seeds)
    return {"difference": difference, "low": difference - half, "high": difference + half,
            "excludes_zero": difference - half > 0 or difference + half < 0,
            "per_seed": per_seed, "std_over_seeds": math.sqrt(var_seeds), "seeds": seeds, "problems": problems}


def describe_difference(result: dict, percent: bool = True) -> str:
    """'+3.1 points [0.4, 5.8]' (or the fraction itself with percent=False)."""
    scale, unit = (100, " points") if percent else (1, "")
    return (f"{scale * result['difference']:+.1f}{unit} [{scale * result['low']:+.1f}, {scale * result['high']:+.1f}]")


def verdict(result: dict, a: str, b: str) -> str:
    """What the interval allows one to say about A vs B."""
    if not result["excludes_zero"]:
        return f"no difference shown between {a} and {b} (the interval includes 0)"
    return f"{a} {'above' if result['difference'] > 0 else 'below'} {b}"


def differences_table(differences: list[dict]) -> list[str]:
    """Markdown rows for paired differences (each {a, b, **paired_difference}): the
    difference with its interval, per seed, and what the interval allows one to say."""
    lines = ["| comparison | difference (points) [95 % interval] | per seed | verdict |", "|---|---|---|---|"]
    for d in differences:
        per_seed = ", ".join(f"{100 * x:+.1f}" for x in d["per_seed"])
        lines.append(f"| {d['a']} - {d['b']} | {describe_difference(d)} | {per_seed} | {verdict(d, d['a'], d['b'])} |")
    return lines


def problem_scores(samples_file) -> list[float]:
    """Per held-out problem, the share of its answers that were right (score >= 1, as the
    evaluation's accuracy counts them), in the evaluation's order: one samples.jsonl."""
    import json
    from pathlib import Path

    return sample_scores([json.loads(line) for line in Path(samples_file).read_text().splitlines() if line.strip()])


def sample_scores(samples: list[dict]) -> list[float]:
    """problem_scores of samples in memory (evaluate_datasets' second result)."""
    scores = []
    for sample in samples:
        marks = [1.0 if s >= 1.0 else 0.0 for s in sample["scores"]]
        scores.append(sum(marks) / len(marks) if marks else 0.0)
    return scores
