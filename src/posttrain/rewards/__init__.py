"""Reward functions in TRL's shape, registered by name. No torch import here.

A reward takes the completions and the dataset's columns as keyword arguments and returns one
float per completion (or None to abstain): `fn(completions, ground_truth, **columns)`. Options
are keyword-only parameters, set per reward in a recipe:

    rewards:
      - {name: math, weight: 1.0, timeout: 2}
      - {name: think_format, weight: 0.2}
      - {name: my_package.rewards:brevity, weight: 0.1, on_error: zero}   # a user's own
"""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Callable

from posttrain.errors import UserError
from posttrain.rewards.code import code_reward
from posttrain.rewards.countdown import countdown_reward
from posttrain.rewards.gym import gym_reward
from posttrain.rewards.format import (non_stop_penalty_reward, overlong_penalty_reward,
                                      tag_count_reward, think_format_reward)
from posttrain.rewards.ifeval import ifeval_reward
from posttrain.rewards.math_answer import math_reward
from posttrain.rewards.llm_judge import LLMStepJudge, llm_judge_reward
from posttrain.rewards.model_reward import PRMStepJudge, reward_model_reward
from posttrain.rewards.numeric import gsm8k_reward, numeric_reward

logger = logging.getLogger(__name__)

REWARDS: dict[str, Callable] = {
    "numeric": numeric_reward,
    "gsm8k": gsm8k_reward,  # numeric with GSM8K's strict `#### N` rule (verl's openai/gsm8k)
    "math": math_reward,
    "ifeval": ifeval_reward,
    "code": code_reward,
    "think_format": think_format_reward,
    "tag_count": tag_count_reward,
    "overlong_penalty": overlong_penalty_reward,
    "non_stop_penalty": non_stop_penalty_reward,
    "countdown": countdown_reward,
    "reasoning_gym": gym_reward,  # a reasoning-gym record, by its dataset's own score_answer (gym.py)
    "reward_model": reward_model_reward,  # a trained reward or process reward model (model_reward.py)
    "llm_judge": llm_judge_reward,  # a causal LM with a template and a score parser (llm_judge.py)
}
# Models as step judges of reasoning trees, by the name a judge block gives: {name: reward_model, path: ...}.
MODEL_JUDGES: dict[str, type] = {"reward_model": PRMStepJudge, "llm_judge": LLMStepJudge}


def verifier_reward(completions, verifier, *, timeout: float = 2.0, **columns) -> list[float | None]:
    """Score each completion with the reward its record names in the `verifier` column
    (mixed data such as Tulu 3 RLVR: numeric for GSM8K, math for MATH, ifeval for IFEval);
    `timeout` reaches every reward that is bounded by one.

    >>> verifier_reward(["Answer: 3", r"\\boxed{\\frac12}"], verifier=["numeric", "math"], ground_truth=["3", "0.5"])
    [1.0, 1.0]
    """
    scores: list[float | None] = [None] * len(completions)
    for name in dict.fromkeys(verifier):
        if name not in REWARDS:
            raise ValueError(f"unknown verifier {name!r} (rewards: {', '.join(REWARDS)})")
        rows = [i for i, v in enumerate(verifier) if v == name]
        picked = {k: [v[i] for i in rows] if isinstance(v, list) and len(v) == len(completions) else v
                  for k, v in columns.items()}
        fn = REWARDS[name]
        options = {"timeout": timeout} if "timeout" in reward_options(fn) else {}
        for i, score in zip(rows, fn([completions[i] for i in rows], **picked, **options)):
            scores[i] = score
    return scores


def _warm_verifiers(*, timeout: float = 2.0, **_) -> None:
    for name in ("math", "ifeval"):
        REWARDS[name].warm(timeout=timeout)


def _verifier_unreadable(record: dict) -> str | None:
    name = record.get("verifier")
    if not name:
        return "no verifier column (name the reward that scores it, e.g. eval.reward: numeric)"
    if name not in REWARDS or name == "verifier":
        return f"unknown verifier {name!r} (rewards: {', '.join(REWARDS)})"
    return unreadable_truth(REWARDS[name], record)


verifier_reward.warm = _warm_verifiers
verifier_reward.unreadable_truth = _verifier_unreadable
REWARDS["verifier"] = verifier_reward


def unreadable_truth(fn: Callable, record: dict) -> str | None:
    """Why reward `fn` cannot read `record`'s ground truth, or None (it can, or it reads none)."""
    fn = getattr(fn, "fn", fn)  # a GuardedReward's function
    check = getattr(fn, "unreadable_truth", None)
    return check(record) if check is not None else None


def check_ground_truths(reward, records: list[dict], where: str) -> None:
    """Every record's ground truth must be readable by `reward` (a GuardedReward, a function or
    a name): the first that is not is a UserError naming `where` (the data source) and the record."""
    fn = resolve_reward(reward) if isinstance(reward, str) else reward
    for i, record in enumerate(records):
        reason = unreadable_truth(fn, record)
        if reason:
            name = reward if isinstance(reward, str) else getattr(fn, "__name__", str(reward))
            other = record.get("verifier")
            hint = f"; the record names verifier {other!r}: use that reward (or `verifier`)" if other and other != name else ""
            raise UserError(f"{where}: record {i}: reward '{name}' cannot score it: {reason}{hint}")


class RewardError(RuntimeError):
    """A reward function raised (with on_error: fail) or returned the wrong number of scores."""


def resolve_reward(name: str) -> Callable:
    """A registered name, or a dotted path to a user's function (`pkg.mod:fn` or `pkg.mod.fn`)."""
    if name in REWARDS:
        return REWARDS[name]
    module_name, sep, attribute = name.partition(":") if ":" in name else name.rpartition(".")
    if not sep or not module_name:
        raise LookupError(f"unknown reward '{name}' (registered: {', '.join(REWARDS)}; "
                          "or give a dotted path like my_package.rewards:my_reward)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(f"reward '{name}': cannot import {module_name}: {exc}") from None
    fn = getattr(module, attribute, None)
    if not callable(fn):
        raise LookupError(f"reward '{name}': {module_name} has no function {attribute!r}")
    return fn


def reward_options(fn: Callable) -> dict[str, inspect.Parameter]:
    """The options a reward accepts: its keyword-only parameters."""
    return {p.name: p for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


class GuardedReward:
    """A reward with its options bound, checked outputs, and a policy for exceptions.

    If the function raises on a batch, it is called again one sample at a time to find which
    sample raised: `on_error="fail"` stops with the reward's name and the sample's index,
    `on_error="zero"` scores that sample 0.0, counts it in `errors` and logs it.
    """

    def __init__(self, name: str, fn: Callable, options: dict, on_error: str = "fail"):
        self.__name__ = name  # TRL logs rewards/<__name__>/mean
        self.fn, self.options, self.on_error, self.errors = fn, options, on_error, 0

    def warm(self) -> None:
        """Start what the reward needs before the first batch (a worker pool), if anything."""
        warm = getattr(self.fn, "warm", None)
        if warm is not None:
            warm(**self.options)

    def _call(self, completions, columns) -> list:
        scores = list(self.fn(completions, **columns, **self.options))
        if len(scores) != len(completions):
            raise RewardError(f"reward '{self.__name__}' returned {len(scores)} scores "
                              f"for {len(completions)} completions")
        return scores

    def __call__(self, completions, **columns) -> list:
        try:
            return self._call(completions, columns)
        except (RewardError, UserError):  # a wrong count of scores; a reward that cannot run here at all
            raise
        except Exception:  # noqa: BLE001 - find the sample, then apply the policy
            pass
        n = len(completions)
        scores = []
        for i in range(n):
            one = {k: v[i : i + 1] if isinstance(v, list) and len(v) == n else v for k, v in columns.items()}
            try:
                scores += self._call(completions[i : i + 1], one)
            except Exception as exc:  # noqa: BLE001
                message = f"reward '{self.__name__}' raised on sample {i}: {type(exc).__name__}: {exc}"
                if self.on_error == "fail":
                    raise RewardError(message + " (set on_error: zero to score such samples 0)") from exc
                self.errors += 1
                logger.warning("%s; scored 0 (%d errors so far)", message, self.errors)
                scores.append(0.0)
        return scores


def build_reward(name: str, options: dict | None = None, on_error: str = "fail") -> GuardedReward:
    fn = resolve_reward(name)
    options = dict(options or {})
    accepted = reward_options(fn)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise LookupError(f"reward '{name}' has no option {unknown[0]!r} "
                          f"(options: {', '.join(accepted) or 'none'})")
    return GuardedReward(name, fn, options, on_error)


def build_reward_ref(ref, max_completion_length: int | None = None):
    """A reward from a reference: a name (or dotted path), or an object with `name`, `options`
    and `on_error` (a recipe's reward block: `{name: math, timeout: 2}`); with a `gate` or a
    `truncated` rule (an rlvr reward block), the composed reward (ComposedReward), whose
    truncation rule needs the trainer's `max_completion_length`."""
    if isinstance(ref, str):
        return build_reward(ref)
    reward = build_reward(ref.name, ref.options, ref.on_error)
    gate, truncated = getattr(ref, "gate", None), getattr(ref, "truncated", None)
    if gate is None and truncated is None:
        return reward
    if truncated is not None and max_completion_length is None:
        raise ValueError(f"reward '{ref.name}': a truncated rule needs the trainer's max_completion_length")
    return ComposedReward(reward, gate and build_reward_ref(gate), truncated, max_completion_length)


class ComposedReward:
    """A reward gated by another and with a rule for truncated completions (docs/rewards.md):

        score = reward x gate                      (gate: the gate's score, e.g. a format reward)
        score = truncated   if len(completion_ids) >= max_completion_length

    An abstention (None) of the reward stays one; a gate's None counts as 0. TRL logs it under
    `reward*gate`. The truncation test is the length one of `non_stop_penalty` (a completion that
    used the whole budget did not end)."""

    def __init__(self, reward: GuardedReward, gate: GuardedReward | None, truncated: float | None,
                 max_completion_length: int | None):
        self.reward, self.gate, self.truncated, self.limit = reward, gate, truncated, max_completion_length
        self.__name__ = reward.__name__ + (f"*{gate.__name__}" if gate is not None else "")
        self.fn = reward.fn  # what the ground-truth check reads (unreadable_truth)

    @property
    def errors(self) -> int:
        return self.reward.errors + (self.gate.errors if self.gate is not None else 0)

    def warm(self) -> None:
        self.reward.warm()
        if self.gate is not None:
            self.gate.warm()

    def __call__(self, completions, **columns) -> list:
        scores = list(self.reward(completions, **columns))
        if self.gate is not None:
            gates = self.gate(completions, **columns)
            scores = [None if s is None else s * float(g or 0.0) for s, g in zip(scores, gates)]
        if self.truncated is not None:
            ids = columns.get("completion_ids")
            if ids is None:
                raise RewardError(f"reward '{self.__name__}': the truncated rule needs completion_ids (TRL passes "
                                  "them to every reward)")
            scores = [self.truncated if len(i) >= self.limit else s for s, i in zip(scores, ids)]
        return scores
