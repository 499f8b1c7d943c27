"""The countdown task: reach a target from a list of numbers with + - * /, each number at most
once. Its generator, its operation rule, and procedural reasoning trees."""

from __future__ import annotations

import json
import random
import re

from posttrain.tasks.common import distinct


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

    return distinct(n, split, random.Random(f"countdown/{seed}/{split}"), make)


def countdown_trees(n: int, split: str = "train", seed: int = 0, wrong_per_step: int = 1,
                    wrong_depth: int = 2, **options) -> list[dict]:
    """Reasoning trees for countdown puzzles: the solution computed step by step as the correct
    path, with wrong steps beside it (a slip, an operation leading away from the target, a number
    not in the list) and critiques."""
    rng = random.Random(f"countdown_trees/{seed}/{split}")
    return [countdown_tree(r, rng, wrong_per_step, wrong_depth)
            for r in countdown(n, split=split, seed=seed, **options)]


def _countdown_mistakes(rng: random.Random, a: int, op: str, b: int, right: int, numbers: list[int],
                        target: int) -> list[tuple[str, int, str]]:
    """Realistic mistakes for the countdown step `a op b = right`: a slip, an operation that
    leads away from the target, a number that is not in the list."""
    options = []
    slip = right + rng.choice([-2, -1, 1, 2])
    if slip > 0:
        options.append((f"{a} {op} {b} = {slip}", slip, f"{a} {op} {b} is {right}, not {slip}."))
    others = [o for o in "+-*" if o != op and countdown_apply(a, o, b) not in (None, right)]
    if others:
        other = rng.choice(others)
        value = countdown_apply(a, other, b)
        options.append((f"{a} {other} {b} = {value}", value,
                        f"{a} {other} {b} leads away from {target}; this step needs {a} {op} {b} = {right}."))
    misread = next((m for m in (b + 1, b - 1, b + 2) if m > 0 and m not in numbers), None)
    if misread is not None and countdown_apply(a, op, misread) is not None:
        value = countdown_apply(a, op, misread)
        options.append((f"{a} {op} {misread} = {value}", value,
                        f"{misread} is not one of the numbers {numbers}; the number here is {b}."))
    return options


def countdown_tree(record: dict, rng: random.Random, wrong_per_step: int = 1, wrong_depth: int = 2) -> dict:
    """A tree for a generated countdown record: its solution expression computed step by step
    as the correct path (the last step carries the expression as the answer), and at each step
    `wrong_per_step` incorrect siblings, each continued `wrong_depth - 1` steps."""
    info = json.loads(record["ground_truth"])
    numbers, target = info["numbers"], info["target"]
    expression = record["completion"][0]["content"].removeprefix("Answer:").strip()
    tokens = re.findall(r"\d+|[-+*/]", expression)
    value, parsed = int(tokens[0]), []
    for op, b in zip(tokens[1::2], tokens[2::2]):
        new = countdown_apply(value, op, int(b))
        parsed.append((value, op, int(b), new))
        value = new
    steps, counter, parent = [], iter(range(10_000)), None
    for i, (a, op, b, right) in enumerate(parsed):
        last = i == len(parsed) - 1
        mistakes = _countdown_mistakes(rng, a, op, b, right, numbers, target)
        for text, wrong, critique in rng.sample(mistakes, k=min(wrong_per_step, len(mistakes))):
            wid = f"w{next(counter)}"
            steps.append({"id": wid, "parent": parent, "text": text, "rating": "incorrect", "critique": critique,
                          **({"answer": str(wrong)} if last else {})})
            below, carry = wid, wrong
            for _, op2, b2, _ in parsed[i + 1 : i + wrong_depth]:
                carry_next = countdown_apply(carry, op2, b2)
                if carry_next is None:
                    break
                cid = f"w{next(counter)}"
                steps.append({"id": cid, "parent": below, "text": f"{carry} {op2} {b2} = {carry_next}",
                              "rating": "incorrect", "critique": "it continues from a wrong value."})
                below, carry = cid, carry_next
        sid = f"s{i}"
        steps.append({"id": sid, "parent": parent, "text": f"{a} {op} {b} = {right}", "rating": "correct",
                      **({"answer": expression} if last else {})})
        parent = sid
    return {"question": record["prompt"][0]["content"], "answer": expression, "steps": steps}
