"""Procedurally generated, seeded, verifiable tasks, one module per task: its generator, its
procedural reasoning trees, and where it has them, a step judge and the worked solution of a
question (which the journey experiment's statistics compare answers with).

Train and held-out splits are disjoint by construction: a problem's split is decided by a hash
of its text (tasks/common.py), so no seed or size makes them overlap. Pure Python, no torch.
"""

from __future__ import annotations

from typing import Callable

from posttrain.rewards import MODEL_JUDGES, resolve_reward
from posttrain.tasks.arithmetic import arithmetic, arithmetic_judge, arithmetic_pairs, arithmetic_solution, arithmetic_trees
from posttrain.tasks.common import split_of
from posttrain.tasks.constraints import constraints
from posttrain.tasks.countdown import countdown, countdown_apply, countdown_judge, countdown_search_trees, countdown_trees
from posttrain.tasks.gym import check_gym_task, gym_task, is_gym_task

TASKS: dict[str, Callable[..., list[dict]]] = {
    "arithmetic": arithmetic, "countdown": countdown, "arithmetic_pairs": arithmetic_pairs,
    "arithmetic_trees": arithmetic_trees, "countdown_trees": countdown_trees,
    "countdown_search_trees": countdown_search_trees, "constraints": constraints,
}
# Step judges, `judge(record, previous_steps, step) -> (rating, critique) | None`, by task name.
JUDGES: dict[str, Callable] = {"arithmetic": arithmetic_judge, "countdown": countdown_judge}
# The worked solution of a question, by task name (None for a question of another task).
SOLUTIONS: dict[str, Callable[[str], str | None]] = {"arithmetic": arithmetic_solution}


def resolve_judge(judge):
    """A step judge: a callable, a task's own by the task's name, a dotted path (the rules
    rewards follow), or a model that rates steps with its options, `{name: reward_model, path:
    PRM, threshold: 0.5}` or `{name: llm_judge, path: LM}` (loaded when it first judges); None
    stays None (no judge)."""
    if judge is None or callable(judge):
        return judge
    if not isinstance(judge, str):
        name, options = _judge_block(judge)
        if name not in MODEL_JUDGES:
            raise LookupError(f"unknown model judge '{name}' (model judges: {', '.join(MODEL_JUDGES)}; "
                              f"a task's judge is named bare: {', '.join(JUDGES)})")
        try:
            return MODEL_JUDGES[name](**options)
        except TypeError as exc:
            raise LookupError(f"judge '{name}': {str(exc).split('__init__() ')[-1]}") from None
        except ValueError as exc:
            raise LookupError(f"judge '{name}': {exc}") from None
    if judge in JUDGES:  # a task's own step judge, by the task's name
        return JUDGES[judge]
    if ":" not in judge and "." not in judge:
        raise LookupError(f"unknown judge '{judge}' (built in: {', '.join(JUDGES)}; "
                          "or give a dotted path like my_package.judges:my_judge)")
    return resolve_reward(judge)  # the same dotted-path rules as rewards


def _judge_block(judge) -> tuple[str, dict]:
    if isinstance(judge, dict):
        options = {k: v for k, v in judge.items() if k not in ("name", "on_error")}
        return judge.get("name", ""), options
    return judge.name, dict(judge.options)


def check_judge_ref(judge) -> None:
    """Raises LookupError when `judge` names no judge, or a model judge's options are wrong;
    loads no model."""
    resolve_judge(judge)


def known_task(task: str) -> bool:
    """A task posttrain generates, or reasoning_gym/<name> (checked when it is generated)."""
    return task in TASKS or is_gym_task(task)


def check_task(task: str, options: dict) -> None:
    """Raises ValueError when `task` is unknown or (reasoning-gym) its options are refused."""
    if is_gym_task(task):
        check_gym_task(task, options)
    elif task not in TASKS:
        raise ValueError(f"unknown task '{task}'")


def generate(task: str, n: int, split: str = "train", seed: int = 0, **options) -> list[dict]:
    if is_gym_task(task):
        return gym_task(task, n=n, split=split, seed=seed, **options)
    return TASKS[task](n=n, split=split, seed=seed, **options)


__all__ = ["TASKS", "JUDGES", "SOLUTIONS", "generate", "known_task", "check_task", "resolve_judge", "check_judge_ref", "split_of", "countdown_apply"]
