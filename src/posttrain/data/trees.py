"""Reasoning trees -> shortcut traces, journey traces and step-level preference pairs
(O1 Replication Journey, arXiv 2410.18982).

A tree record (JSONL, one per question):

    {"question": "Compute 66 - 20 + 90.", "answer": "136",
     "steps": [{"id": "a", "parent": null, "text": "66 - 20 = 46", "rating": "correct"},
               {"id": "b", "parent": null, "text": "66 - 20 = 56", "rating": "incorrect",
                "critique": "66 - 20 is 46, not 56."},
               {"id": "c", "parent": "a", "text": "46 + 90 = 136", "rating": "correct", "answer": "136"}]}

Steps link to their parent (`null`: a first step). A correct leaf carries the final `answer`.
A *shortcut* trace is a root-to-leaf path of correct steps ending in the gold answer. A
*journey* trace is the same path with detours: into an incorrect sibling (and possibly a few
steps below it), a reflection built from the critique, a backtrack, then on. Seeded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from posttrain.data.tasks import countdown_apply
from posttrain.rewards.numeric import extract_number

RATINGS = {"correct", "incorrect"}


class TreeError(ValueError):
    """A malformed tree; the message names the step."""


@dataclass
class Step:
    id: str
    parent: str | None
    text: str
    rating: str
    critique: str | None = None
    answer: str | None = None
    children: list["Step"] = field(default_factory=list)

    @property
    def correct(self) -> bool:
        return self.rating == "correct"


@dataclass
class Tree:
    question: str
    answer: str
    roots: list[Step]
    steps: dict[str, Step]


def _same_answer(a: str | None, b: str) -> bool:
    if a is None:
        return False
    x, y = extract_number(str(a)), extract_number(str(b))
    return x == y if x is not None and y is not None else str(a).strip() == str(b).strip()


def parse_tree(record: dict) -> Tree:
    """Check and link a tree record. Raises TreeError naming the step and the problem."""
    for key in ("question", "answer", "steps"):
        if key not in record:
            raise TreeError(f"a tree needs '{key}'")
    steps: dict[str, Step] = {}
    for i, raw in enumerate(record["steps"]):
        sid = str(raw.get("id", ""))
        where = f"step {sid or i}"
        if not sid:
            raise TreeError(f"{where}: no 'id'")
        if sid in steps:
            raise TreeError(f"{where}: duplicate id")
        if raw.get("rating") not in RATINGS:
            raise TreeError(f"{where}: rating is {raw.get('rating')!r}; every step must be rated correct or incorrect")
        if not str(raw.get("text", "")).strip():
            raise TreeError(f"{where}: empty text")
        steps[sid] = Step(sid, raw.get("parent"), str(raw["text"]), raw["rating"], raw.get("critique"), raw.get("answer"))
    roots = []
    for step in steps.values():
        if step.parent is None:
            roots.append(step)
        elif step.parent not in steps:
            raise TreeError(f"step {step.id}: parent {step.parent!r} does not exist")
        else:
            steps[step.parent].children.append(step)
    for step in steps.values():  # every chain of parents must reach a first step
        seen, node = set(), step
        while node.parent is not None:
            if node.id in seen:
                raise TreeError(f"step {step.id}: its parents form a cycle ({' -> '.join(seen)})")
            seen.add(node.id)
            node = steps[node.parent]
    tree = Tree(str(record["question"]), str(record["answer"]), roots, steps)
    if not correct_paths(tree):
        raise TreeError("no path of correct steps reaches the gold answer")
    return tree


def correct_paths(tree: Tree) -> list[list[Step]]:
    """Every root-to-leaf path of correct steps whose leaf gives the gold answer."""
    paths = []

    def walk(step: Step, path: list[Step]) -> None:
        if not step.correct:
            return
        path = [*path, step]
        if not step.children:
            if _same_answer(step.answer, tree.answer):
                paths.append(path)
            return
        for child in step.children:
            walk(child, path)

    for root in tree.roots:
        walk(root, [])
    return paths


def _siblings(tree: Tree, step: Step) -> list[Step]:
    family = tree.steps[step.parent].children if step.parent else tree.roots
    return [s for s in family if not s.correct]


# ----------------------------------------------------------------------------- traces


@dataclass
class TraceOptions:
    """How journey traces are written. Templates take {critique} and {step}."""

    detours: int = 1  # at most this many detours per trace
    detour_probability: float = 1.0  # chance of taking each available detour (until `detours`)
    detour_depth: int = 1  # steps followed into a wrong branch before reflecting
    reflection: str = "Wait, that is wrong: {critique}"
    backtrack: str = "Let me go back and redo that step."
    answer_line: str = "Answer: {answer}"


def shortcut_trace(tree: Tree, rng: random.Random, options: TraceOptions = TraceOptions()) -> str:
    path = rng.choice(correct_paths(tree))
    return "\n".join([*(s.text for s in path), *_answer_line(path, tree, options)])


def _answer_line(path: list[Step], tree: Tree, options: TraceOptions) -> list[str]:
    """The closing answer line, unless the path's last step already is that line (trees
    sampled from a model may end a path with the model's own `Answer: ...` step)."""
    line = options.answer_line.format(answer=tree.answer)
    return [] if path[-1].text.strip() == line.strip() else [line]


def _wrong_branch(step: Step, depth: int) -> list[Step]:
    branch = [step]
    while len(branch) < depth and branch[-1].children:
        branch.append(branch[-1].children[0])
    return branch


def journey_trace(tree: Tree, rng: random.Random, options: TraceOptions = TraceOptions()) -> tuple[str, int]:
    """A correct path with detours; returns the text and the number of detours taken."""
    path = rng.choice(correct_paths(tree))
    lines, taken = [], 0
    for step in path:
        wrong = _siblings(tree, step)
        if wrong and taken < options.detours and rng.random() < options.detour_probability:
            detour = rng.choice(wrong)
            branch = _wrong_branch(detour, options.detour_depth)
            lines += [s.text for s in branch]
            critique = detour.critique or "this step does not follow."
            lines.append(options.reflection.format(critique=critique, step=detour.text))
            lines.append(options.backtrack.format(critique=critique, step=detour.text))
            taken += 1
        lines.append(step.text)
    lines += _answer_line(path, tree, options)
    return "\n".join(lines), taken


def preference_pairs(tree: Tree, options: TraceOptions = TraceOptions()) -> list[dict]:
    """Step-level pairs: the shared correct prefix, then the correct continuation (to the gold
    answer) against an incorrect sibling (and the steps below it)."""
    pairs = []
    path = correct_paths(tree)[0]
    answer = options.answer_line.format(answer=tree.answer)
    for i, step in enumerate(path):
        prefix = [s.text for s in path[:i]]
        for wrong in _siblings(tree, step):
            branch = _wrong_branch(wrong, 10)
            rejected = [*prefix, *(s.text for s in branch)]
            if branch[-1].answer is not None:
                rejected.append(options.answer_line.format(answer=branch[-1].answer))
            pairs.append({
                "prompt": [{"role": "user", "content": tree.question}],
                "chosen": [{"role": "assistant", "content": "\n".join([*prefix, *(s.text for s in path[i:]), answer])}],
                "rejected": [{"role": "assistant", "content": "\n".join(rejected)}],
            })
    return pairs


def build_traces(records: list[dict], kind: str, seed: int = 0, options: TraceOptions = TraceOptions()):
    """SFT records (kind shortcut | journey) or preference pairs (kind pairs) from trees, and
    counts: traces, detours, characters and words."""
    rng = random.Random(f"traces/{kind}/{seed}")
    out, stats = [], {"trees": len(records), "records": 0, "detours": 0, "characters": 0, "words": 0}
    for record in records:
        tree = parse_tree(record)
        if kind == "pairs":
            out += preference_pairs(tree, options)
            continue
        if kind == "shortcut":
            text = shortcut_trace(tree, rng, options)
        else:
            text, taken = journey_trace(tree, rng, options)
            stats["detours"] += taken
        stats["characters"] += len(text)
        stats["words"] += len(text.split())
        out.append({"prompt": [{"role": "user", "content": tree.question}],
                    "completion": [{"role": "assistant", "content": text}]})
    stats["records"] = len(out)
    return out, stats


# ----------------------------------------------------------------------------- procedural trees


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
    return {"question": record["prompt"][0]["content"], "answer": record["ground_truth"], "steps": steps}


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
    import json
    import re

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
