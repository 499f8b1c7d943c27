"""Format and shaping rewards: R1-style <think>/<answer> format, tag counts, DAPO's soft
over-long penalty, and Tulu 3's penalty for completions that never ended."""

from __future__ import annotations

import re

from posttrain.rewards.numeric import completion_text

_THINK_ANSWER = re.compile(r"^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$", re.S)
_ANSWER_ONLY_AFTER_THINK = re.compile(r"^.*?</think>\s*<answer>.*?</answer>\s*$", re.S)
# open-r1's format_reward, exactly: one newline at each seam, and re.M (so `$` also matches
# before a newline: text after "</answer>\n" still passes, as it does there).
# TRL's trl.rewards.think_format_reward: one <think>...</think> block first, anything after it.
_THINK_ONLY = re.compile(r"^<think>(?!.*<think>)(.*?)</think>.*$", re.S)
_OPEN_R1_LAYOUT = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.S | re.M)
_OPEN_R1_TAGS = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")


def _prompt_text(prompt) -> str:
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    return prompt[-1].get("content", "") if prompt else ""


def think_format_reward(completions, prompts=None, *, think_prefilled: bool | None = None,
                        strict: bool = False, answer_tag: bool = True, **columns) -> list[float]:
    """1.0 for `<think>...</think><answer>...</answer>` and nothing else around it.

    When the chat template already wrote `<think>` (the prompt ends with it, or
    `think_prefilled: true`), the completion starts inside the thinking block. `strict: true`
    is open-r1's format reward: `<think>\n...\n</think>\n<answer>\n...\n</answer>` with exactly
    those newlines. `answer_tag: false` is TRL's think_format_reward: a `<think>...</think>` block
    first (one `<think>`), then any text, no `<answer>` tag.

    >>> think_format_reward(["<think>a</think>\\n<answer>1</answer>", "1"])
    [1.0, 0.0]
    >>> think_format_reward(["a</think><answer>1</answer>"], prompts=["Q <think>"])
    [1.0]
    """
    if strict:
        return [1.0 if _OPEN_R1_LAYOUT.match(completion_text(c)) else 0.0 for c in completions]
    if not answer_tag:
        return [1.0 if _THINK_ONLY.match(completion_text(c)) else 0.0 for c in completions]
    prompts = prompts or [None] * len(completions)
    scores = []
    for completion, prompt in zip(completions, prompts):
        prefilled = think_prefilled
        if prefilled is None:
            prefilled = _prompt_text(prompt).rstrip().endswith("<think>")
        pattern = _ANSWER_ONLY_AFTER_THINK if prefilled else _THINK_ANSWER
        text = completion_text(completion)
        ok = pattern.match(text) and (not prefilled or "<think>" not in text)
        scores.append(1.0 if ok else 0.0)
    return scores


def tag_count_reward(completions, *, strict: bool = False, **columns) -> list[float]:
    """0.25 for each of <think>, </think>, <answer>, </answer> present exactly once; with
    `strict: true` (open-r1's tag_count_reward) each counted with the newlines of
    `<think>\n...\n</think>\n<answer>\n...\n</answer>`.

    >>> tag_count_reward(["<think>x</think><answer>1</answer>", "<think><think>"])
    [1.0, 0.0]
    >>> tag_count_reward(["<think>x</think><answer>1</answer>"], strict=True)
    [0.0]
    """
    tags = _OPEN_R1_TAGS if strict else ("<think>", "</think>", "<answer>", "</answer>")
    return [sum((0.25 for t in tags if completion_text(c).count(t) == 1), 0.0) for c in completions]


def _lengths(completions, completion_ids) -> list[int]:
    if completion_ids is None:
        raise ValueError("needs completion_ids (token ids of each completion); "
                         "TRL's GRPOTrainer passes them to reward functions")
    return [len(ids) for ids in completion_ids]


def overlong_penalty_reward(completions, completion_ids=None, *, max_length: int,
                            cache: int, **columns) -> list[float]:
    """DAPO's soft over-long punishment: 0 up to max_length - cache tokens, then falling
    linearly to -1 at max_length, and -1 beyond.

    >>> overlong_penalty_reward(["a"] * 3, [[0] * 10, [0] * 15, [0] * 30], max_length=20, cache=10)
    [0.0, -0.5, -1.0]
    """
    start = max_length - cache
    scores = []
    for length in _lengths(completions, completion_ids):
        if length <= start:
            scores.append(0.0)
        elif length <= max_length:
            scores.append((start - length) / cache)
        else:
            scores.append(-1.0)
    return scores


def non_stop_penalty_reward(completions, completion_ids=None, *, max_completion_length: int,
                            penalty: float = -1.0, **columns) -> list[float]:
    """Tulu 3: a completion that used the whole budget without ending gets `penalty`.

    >>> non_stop_penalty_reward(["a", "b"], [[1, 2], [1, 2, 3, 4]], max_completion_length=4)
    [0.0, -1.0]
    """
    return [penalty if length >= max_completion_length else 0.0
            for length in _lengths(completions, completion_ids)]
