"""What every generated task shares: the hash split that keeps train and held-out disjoint, and
drawing distinct problems."""

from __future__ import annotations

import hashlib
import random


HELDOUT_BUCKETS = 5  # one problem in 20 (by hash) belongs to the held-out split
HASH_BUCKETS = 100


def split_of(problem: str) -> str:
    bucket = int(hashlib.sha256(problem.encode()).hexdigest(), 16) % HASH_BUCKETS
    return "heldout" if bucket < HELDOUT_BUCKETS else "train"


def distinct(n: int, split: str, rng: random.Random, make) -> list[dict]:
    """`n` records from `make(rng)` (a question and its record, or None to skip) whose questions
    are distinct and belong to `split`."""
    seen: set[str] = set()
    records = []
    attempts = 0
    while len(records) < n:
        attempts += 1
        if attempts > 200 * n + 10_000:
            raise ValueError(f"could not find {n} distinct {split} problems with these options; "
                             "widen them (larger numbers, more operands)")
        made = make(rng)
        if made is None:
            continue
        question, record = made
        if question not in seen and split_of(question) == split:
            seen.add(question)
            records.append(record)
    return records


# ----------------------------------------------------------------------------- answer-format instructions

# What a task's prompt tells the model about the answer format, as a system turn (as
# reasoning-gym and open-r1 prompt): named instructions, each with the format it asks for, which
# the task's verifiers read (rewards/answers.py: an `Answer:` line or an <answer> tag).
ANSWER_LINE = ("Solve the problem step by step. Then give the final answer alone on the last line, "
               "in the form 'Answer: <answer>'.")
GYM_PROMPTS = ("default", "simple", "direct", "DeepSeekZero", "chain_of_draft")  # reasoning_gym.utils.SYSTEM_PROMPTS


def instruction_text(instruction: str | None) -> tuple[str | None, str | None]:
    """(the instruction's text, the answer style it asks for: 'line', 'tag', or None for a
    text of the user's own) for an `instruction` option: none, answer_line, one of
    reasoning-gym's system prompts by name (they ask for <answer> tags), or any other text."""
    if instruction in (None, "", "none"):
        return None, None
    if instruction == "answer_line":
        return ANSWER_LINE, "line"
    if instruction in GYM_PROMPTS:
        from reasoning_gym.utils import SYSTEM_PROMPTS

        return SYSTEM_PROMPTS[instruction], "tag"
    return instruction, None


def instructed(records: list[dict], instruction: str | None) -> list[dict]:
    """Records with the instruction as a system turn before the question, and (SFT) their
    worked answers' last `Answer: X` line written as the instruction asks (`<answer>X</answer>`
    for a tag instruction)."""
    text, style = instruction_text(instruction)
    if text is None:
        return records
    out = []
    for record in records:
        record = {**record, "prompt": [{"role": "system", "content": text}, *record["prompt"]]}
        if style == "tag" and record.get("completion"):
            content = record["completion"][-1]["content"]
            head, _, last = content.rpartition("\n")
            if last.startswith("Answer: "):
                tagged = f"<answer>{last.removeprefix('Answer: ')}</answer>"
                record["completion"] = [*record["completion"][:-1],
                                        {**record["completion"][-1], "content": f"{head}\n{tagged}" if head else tagged}]
        out.append(record)
    return out
