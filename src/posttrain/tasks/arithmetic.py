"""The arithmetic task: "Compute 66 - 20 + 90." with worked steps and "Answer: N".

Its generator, the worked solution of any of its questions, preference pairs with a slipped step,
procedural reasoning trees (a slip, the wrong operation, a misread number) and a step judge that
compares a step with the worked solution's.

A record:

    {"prompt": [{"role": "user", "content": "Compute 66 - 20 + 90."}],
     "completion": [{"role": "assistant", "content": "66 - 20 = 46\\n46 + 90 = 136\\nAnswer: 136"}],
     "ground_truth": "136", "verifier": "numeric"}
"""

from __future__ import annotations

import random
import re

from posttrain.rewards.answers import extract_final_answer
from posttrain.tasks.common import distinct, instructed


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


def arithmetic(
    n: int,
    split: str = "train",
    seed: int = 0,
    min_operands: int = 2,
    max_operands: int = 3,
    max_value: int = 99,
    instruction: str | None = None,
) -> list[dict]:
    """`n` distinct multi-step integer arithmetic problems with worked solutions. `instruction`:
    the answer-format instruction, a system turn (tasks/common.instruction_text; none by default:
    the tiny model learns the format from its SFT data, a pretrained one needs `answer_line`)."""

    def make(rng):
        question, steps, answer = _arithmetic_problem(rng, min_operands, max_operands, max_value)
        solution = "\n".join([*steps, f"Answer: {answer}"])
        return question, {
            "prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": solution}],
            "ground_truth": str(answer),
            "verifier": "numeric",
        }

    return instructed(distinct(n, split, random.Random(f"arithmetic/{seed}/{split}"), make), instruction)


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
    rng = random.Random(f"arithmetic_trees/{seed}/{split}")
    return [arithmetic_tree(r, rng, wrong_per_step, wrong_depth)
            for r in arithmetic(n, split=split, seed=seed, **options)]


def _wrong_steps(rng: random.Random, a: int, op: str, b: int, right: int) -> list[tuple[str, int, str]]:
    """Realistic mistakes for `a op b = right`: a slip, the wrong operation, a misread number."""
    slip = right + rng.choice([-10, -2, -1, 1, 2, 10])
    flipped = a - b if op == "+" else a + b
    misread_b = int(str(b)[::-1]) if b >= 10 and str(b)[::-1] != str(b) else b + rng.choice([1, 2])
    misread = a + misread_b if op == "+" else a - misread_b
    options = [
        (f"{a} {op} {b} = {slip}", slip, f"{a} {op} {b} is {right}, not {slip}."),
        (f"{a} {'-' if op == '+' else '+'} {b} = {flipped}", flipped,
         f"the problem {'adds' if op == '+' else 'subtracts'} {b}; this step {'subtracts' if op == '+' else 'adds'} it."),
        (f"{a} {op} {misread_b} = {misread}", misread, f"the number is {b}, not {misread_b}."),
    ]
    return [o for o in options if o[1] != right]


def arithmetic_tree(record: dict, rng: random.Random, wrong_per_step: int = 1, wrong_depth: int = 2) -> dict:
    """A tree for a generated arithmetic record: its worked steps as the correct path, and at
    each step `wrong_per_step` incorrect siblings, each continued `wrong_depth - 1` steps."""
    lines = record["completion"][0]["content"].split("\n")[:-1]
    parsed = [(int(l.split()[0]), l.split()[1], int(l.split()[2]), int(l.split(" = ")[1])) for l in lines]
    steps, counter = [], iter(range(10_000))
    parent = None
    for i, (a, op, b, right) in enumerate(parsed):
        last = i == len(parsed) - 1
        mistakes = _wrong_steps(rng, a, op, b, right)
        for text, value, critique in rng.sample(mistakes, k=min(wrong_per_step, len(mistakes))):
            wid = f"w{next(counter)}"
            steps.append({"id": wid, "parent": parent, "text": text, "rating": "incorrect", "critique": critique,
                          **({"answer": str(value)} if last else {})})
            below, carry = wid, value
            for a2, op2, b2, _ in parsed[i + 1 : i + wrong_depth]:
                carry_next = carry + b2 if op2 == "+" else carry - b2
                cid = f"w{next(counter)}"
                steps.append({"id": cid, "parent": below, "text": f"{carry} {op2} {b2} = {carry_next}",
                              "rating": "incorrect", "critique": "it continues from a wrong value."})
                below, carry = cid, carry_next
        sid = f"s{i}"
        steps.append({"id": sid, "parent": parent, "text": lines[i], "rating": "correct",
                      **({"answer": record["ground_truth"]} if last else {})})
        parent = sid
    return {"question": record["prompt"][-1]["content"], "answer": record["ground_truth"], "steps": steps}


_EQUATION = re.compile(r"^\s*(-?\d+)\s*([-+*x×/])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")


def arithmetic_judge(record: dict, previous: list[str], step: str):
    """Step checker for the generated arithmetic task: the step must be the worked solution's
    next step (the path so far being right); the critique says what is wrong with it."""
    completion = record.get("completion")
    if not completion or (step.strip() and extract_final_answer(step)) is not None:
        return None  # no worked solution to compare with; a final answer is the verifier's
    gold = [line for line in completion[-1]["content"].split("\n") if not line.startswith("Answer")]
    k = len(previous)
    if previous != gold[:k]:
        return "incorrect", "it continues from an earlier wrong step."
    if k >= len(gold):
        return "incorrect", "the solution is already complete; only the answer is left."
    if step.strip() == gold[k]:
        return "correct", None
    got, want = _EQUATION.match(step), _EQUATION.match(gold[k])
    if got and want:
        a, op, b, c = got.groups()
        wa, wop, wb, wc = want.groups()
        if (a, op, b) == (wa, wop, wb):
            return "incorrect", f"{a} {op} {b} is {wc}, not {c}."
        if op != wop:
            return "incorrect", f"the operation here is {wop}, not {op}: it should be {gold[k]}."
        return "incorrect", f"the numbers are misread: it should be {gold[k]}."
    return "incorrect", f"the next step should be {gold[k]}."
