"""Procedurally generated, seeded, verifiable tasks.

A task record is chat prompt/completion plus `ground_truth`:

    {"prompt": [{"role": "user", "content": "Compute 66 - 20 + 90."}],
     "completion": [{"role": "assistant", "content": "66 - 20 = 46\\n46 + 90 = 136\\nAnswer: 136"}],
     "ground_truth": "136"}

Train and held-out splits are disjoint by construction: a problem's split is decided by a hash
of its text, so no seed or size makes them overlap.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

HELDOUT_BUCKETS = 5  # one problem in 20 (by hash) belongs to the held-out split
HASH_BUCKETS = 100


def split_of(problem: str) -> str:
    bucket = int(hashlib.sha256(problem.encode()).hexdigest(), 16) % HASH_BUCKETS
    return "heldout" if bucket < HELDOUT_BUCKETS else "train"


def _worked_step(total: int, op: str, operand: int) -> tuple[str, int]:
    """One line of an arithmetic worked solution ("66 - 20 = 46") and the new running total."""
    new_total = total + operand if op == "+" else total - operand
    return f"{total} {op} {operand} = {new_total}", new_total


def _arithmetic_problem(rng: random.Random, min_operands: int, max_operands: int, max_value: int):
    """Operands in [0, max_value], + and -, every intermediate result non-negative."""
    count = rng.randint(min_operands, max_operands)
    total = rng.randint(0, max_value)
    terms, steps = [str(total)], []
    for _ in range(count - 1):
        operand = rng.randint(0, max_value)
        op = rng.choice("+-") if total >= operand else "+"
        step, total = _worked_step(total, op, operand)
        steps.append(step)
        terms += [op, str(operand)]
    return f"Compute {' '.join(terms)}.", steps, total


_QUESTION = re.compile(r"^Compute (\d+(?: [-+] \d+)+)\.$")


def arithmetic_solution(question: str) -> str | None:
    """The worked solution of an arithmetic task question ("Compute 66 - 20 + 90."), as the
    generator writes it; None for any other text."""
    match = _QUESTION.match(question.strip())
    if not match:
        return None
    tokens = match.group(1).split(" ")
    total, steps = int(tokens[0]), []
    for op, operand in zip(tokens[1::2], tokens[2::2]):
        step, total = _worked_step(total, op, int(operand))
        steps.append(step)
    return "\n".join([*steps, f"Answer: {total}"])


def _distinct(n: int, split: str, rng: random.Random, make) -> list[dict]:
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


def arithmetic(
    n: int,
    split: str = "train",
    seed: int = 0,
    min_operands: int = 2,
    max_operands: int = 3,
    max_value: int = 99,
) -> list[dict]:
    """`n` distinct multi-step integer arithmetic problems with worked solutions."""

    def make(rng):
        question, steps, answer = _arithmetic_problem(rng, min_operands, max_operands, max_value)
        solution = "\n".join([*steps, f"Answer: {answer}"])
        return question, {
            "prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": solution}],
            "ground_truth": str(answer),
            "verifier": "numeric",
        }

    return _distinct(n, split, random.Random(f"arithmetic/{seed}/{split}"), make)


def countdown_apply(a: int, op: str, b: int) -> int | None:
    """`a op b` as countdown allows it: positive differences and whole quotients only, else None."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a - b > 0 else None
    if op == "*":
        return a * b
    return a // b if b and a % b == 0 else None


def _countdown_problem(rng: random.Random, count: int, max_number: int, max_target: int):
    """Pick `count` numbers and combine a random subset of at least two into a target."""
    numbers = [rng.randint(1, max_number) for _ in range(count)]
    chosen = rng.sample(numbers, rng.randint(2, count))
    expression, value = str(chosen[0]), chosen[0]
    for number in chosen[1:]:
        options = [(op, result) for op in "+*-/" if (result := countdown_apply(value, op, number)) is not None]
        op, new_value = rng.choice(options)
        expression, value = f"({expression} {op} {number})", new_value
    expression = expression[1:-1] if expression.startswith("(") and expression.count("(") == 1 else expression
    return numbers, value, expression if 0 < value <= max_target else None


def countdown(
    n: int,
    split: str = "train",
    seed: int = 0,
    count: int = 4,
    max_number: int = 25,
    max_target: int = 200,
) -> list[dict]:
    """`n` countdown puzzles: reach the target using the numbers, each at most once, with
    + - * / (difficulty: `count` numbers up to `max_number`, targets up to `max_target`).
    The completion gives one solution; any other expression that reaches the target counts."""

    def make(rng):
        numbers, target, expression = _countdown_problem(rng, count, max_number, max_target)
        if expression is None:
            return None
        question = (f"Using the numbers {numbers}, make {target}. Use each number at most once "
                    "and only + - * /. End with 'Answer: <expression>'.")
        return question, {
            "prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": f"Answer: {expression}"}],
            "ground_truth": json.dumps({"numbers": numbers, "target": target}),
            "verifier": "countdown",
        }

    return _distinct(n, split, random.Random(f"countdown/{seed}/{split}"), make)


def _slip(steps: list[str], rng: random.Random) -> tuple[list[str], int]:
    """Redo a worked solution with one step's result off by a small amount (a realistic slip),
    carrying the wrong value through the remaining steps."""
    bad = rng.randrange(len(steps))
    out, value = [], None
    for i, step in enumerate(steps):
        left, right = step.split(" = ")
        a, op, b = left.split()
        a = value if value is not None else int(a)
        result = a + int(b) if op == "+" else a - int(b)
        if i == bad:
            result += rng.choice([-10, -2, -1, 1, 2, 10])
        out.append(f"{a} {op} {b} = {result}")
        value = result
    return out, value


def arithmetic_pairs(n: int, split: str = "train", seed: int = 0, **options) -> list[dict]:
    """Preference pairs for the arithmetic task: the worked solution (chosen) and the same
    solution with one slipped step carried to a wrong answer (rejected)."""
    rng = random.Random(f"arithmetic_pairs/{seed}/{split}")
    pairs = []
    for record in arithmetic(n, split=split, seed=seed, **options):
        steps = record["completion"][0]["content"].split("\n")[:-1]
        wrong_steps, wrong = _slip(steps, rng)
        if wrong == int(record["ground_truth"]):
            wrong += 1
        rejected = "\n".join([*wrong_steps, f"Answer: {wrong}"])
        pairs.append({"prompt": record["prompt"], "chosen": record["completion"],
                      "rejected": [{"role": "assistant", "content": rejected}]})
    return pairs


def arithmetic_trees(n: int, split: str = "train", seed: int = 0, wrong_per_step: int = 1,
                     wrong_depth: int = 2, **options) -> list[dict]:
    """Reasoning trees for arithmetic problems: the worked steps as the correct path, with
    realistic wrong steps (slip, wrong operation, misread number) and critiques beside them."""
    from posttrain.data.trees import arithmetic_tree

    rng = random.Random(f"arithmetic_trees/{seed}/{split}")
    return [arithmetic_tree(r, rng, wrong_per_step, wrong_depth)
            for r in arithmetic(n, split=split, seed=seed, **options)]


def countdown_trees(n: int, split: str = "train", seed: int = 0, wrong_per_step: int = 1,
                    wrong_depth: int = 2, **options) -> list[dict]:
    """Reasoning trees for countdown puzzles: the solution computed step by step as the correct
    path, with wrong steps beside it (a slip, an operation leading away from the target, a number
    not in the list) and critiques."""
    from posttrain.data.trees import countdown_tree

    rng = random.Random(f"countdown_trees/{seed}/{split}")
    return [countdown_tree(r, rng, wrong_per_step, wrong_depth)
            for r in countdown(n, split=split, seed=seed, **options)]


TASKS = {"arithmetic": arithmetic, "countdown": countdown, "arithmetic_pairs": arithmetic_pairs,
         "arithmetic_trees": arithmetic_trees, "countdown_trees": countdown_trees}


def generate(task: str, n: int, split: str = "train", seed: int = 0, **options) -> list[dict]:
    return TASKS[task](n=n, split=split, seed=seed, **options)
