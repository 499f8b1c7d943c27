"""Procedurally generated, seeded, verifiable tasks, one module per task: its generator, its
procedural reasoning trees, and where it has them, a step judge and the worked solution of a
question (which the journey experiment's statistics compare answers with).

Train and held-out splits are disjoint by construction: a problem's split is decided by a hash
of its text (tasks/common.py), so no seed or size makes them overlap. Pure Python, no torch.
"""

from __future__ import annotations

from typing import Callable

from posttrain.rewards import resolve_reward
from posttrain.tasks.arithmetic import arithmetic, arithmetic_judge, arithmetic_pairs, arithmetic_solution, arithmetic_trees
from posttrain.tasks.common import split_of
from posttrain.tasks.countdown import countdown, countdown_apply, countdown_trees

TASKS: dict[str, Callable[..., list[dict]]] = {
    "arithmetic": arithmetic, "countdown": countdown, "arithmetic_pairs": arithmetic_pairs,
    "arithmetic_trees": arithmetic_trees, "countdown_trees": countdown_trees,
}
# Step judges, `judge(record, previous_steps, step) -> (rating, critique) | None`, by task name.
JUDGES: dict[str, Callable] = {"arithmetic": arithmetic_judge}
# The worked solution of a question, by task name (None for a question of another task).
SOLUTIONS: dict[str, Callable[[str], str | None]] = {"arithmetic": arithmetic_solution}


def resolve_judge(judge):
    """A step judge: a callable, a task's own by the task's name, or a dotted path (the rules
    rewards follow); None stays None (no judge)."""
    if judge is None or callable(judge):
        return judge
    if judge in JUDGES:  # a task's own step judge, by the task's name
        return JUDGES[judge]
    if ":" not in judge and "." not in judge:
        raise LookupError(f"unknown judge '{judge}' (built in: {', '.join(JUDGES)}; "
                          "or give a dotted path like my_package.judges:my_judge)")
    return resolve_reward(judge)  # the same dotted-path rules as rewards


def generate(task: str, n: int, split: str = "train", seed: int = 0, **options) -> list[dict]:
    return TASKS[task](n=n, split=split, seed=seed, **options)


__all__ = ["TASKS", "JUDGES", "SOLUTIONS", "generate", "resolve_judge", "split_of", "countdown_apply"]
