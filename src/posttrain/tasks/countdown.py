"""The countdown task: reach a target from a list of numbers with + - * /, each number at most
once. Its generator, its operation rule, and procedural reasoning trees."""

from __future__ import annotations

import json
import random
import re

from posttrain.tasks.common import distinct, instructed


def countdown_apply(a: int, op: str, b: int) -> int | None:
    """`a op b` as countdown allows it: positive differences and whole quotients only, else None."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b if a - b > 0 else None
    if op == "*":
        return a * b
    return a // b if b and a % b == 0 else None


def _countdown_problem(rng: random.Random, count: int, max_number: int, max_target: int, use_all: bool = False):
    """Pick `count` numbers and combine a random subset of at least two (`use_all`: all of them)
    into a target."""
    numbers = [rng.randint(1, max_number) for _ in range(count)]
    chosen = rng.sample(numbers, count if use_all else rng.randint(2, count))
    expression, value = str(chosen[0]), chosen[0]
    for number in chosen[1:]:
        options = [(op, result) for op in "+*-/" if (result := countdown_apply(value, op, number)) is not None]
        op, new_value = rng.choice(options)
        expression, value = f"({expression} {op} {number})", new_value
    expression = expression[1:-1] if expression.startswith("(") and expression.count("(") == 1 else expression
    return numbers, value, expression if 0 < value <= max_target else None


QUESTION = ("Using the numbers {numbers}, make {target}. Use each number at most once and only + - * /. "
            "End with 'Answer: <expression>'.")


def countdown(
    n: int,
    split: str = "train",
    seed: int = 0,
    count: int = 4,
    max_number: int = 25,
    max_target: int = 200,
    use_all: bool = False,
    steps: bool = False,
    question: str = QUESTION,
    instruction: str | None = None,
) -> list[dict]:
    """`n` countdown puzzles: reach the target using the numbers, each at most once, with
    + - * / (difficulty: `count` numbers up to `max_number`, targets up to `max_target`;
    `use_all`: the target is made from all the numbers, so shortcuts through two of them are
    rare). The completion gives one solution (`steps`: computed step by step, as the search
    trees write steps); any other expression that reaches the target counts. `question` is the
    prompt's wording, with {numbers} and {target} (a short one trains faster on a tiny model);
    `instruction` the answer-format instruction (tasks/common.instruction_text; none by default)."""

    def make(rng):
        numbers, target, expression = _countdown_problem(rng, count, max_number, max_target, use_all)
        if expression is None:
            return None
        text = question.format(numbers=numbers, target=target)
        answer = _stepwise(numbers, expression) if steps else f"Answer: {expression}"
        return text, {
            "prompt": [{"role": "user", "content": text}],
            "completion": [{"role": "assistant", "content": answer}],
            "ground_truth": json.dumps({"numbers": numbers, "target": target}),
            "verifier": "countdown",
        }

    return instructed(distinct(n, split, random.Random(f"countdown/{seed}/{split}"), make), instruction)


def _stepwise(numbers: list[int], expression: str) -> str:
    """The solution `expression` (left to right, as the generator builds it) written as the
    search trees write steps: `a op b = c (left: ...)`, then the answer line."""
    tokens = re.findall(r"\d+|[-+*/]", expression)
    left = list(numbers)
    value = int(tokens[0])
    left.remove(value)
    lines = []
    for op, b in zip(tokens[1::2], tokens[2::2]):
        b = int(b)
        left.remove(b)
        new = countdown_apply(value, op, b)
        lines.append(f"{value} {op} {b} = {new} (left: {', '.join(map(str, [*left, new]))})")
        value = new
    return "\n".join([*lines, f"Answer: {expression}"])


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
    return {"question": record["prompt"][-1]["content"], "answer": expression, "steps": steps}


# ----------------------------------------------------------------------------- search trees
#
# Stream of Search (Gandhi et al., arXiv 2404.03683): depth-first search over countdown states,
# dead ends and backtracking included. A state is the numbers still to use, each with the
# expression that made it. A step combines two of them; its text names the numbers left, so a
# trace says where the search stands after every step and every backtrack.


def _state_text(state: list[tuple[int, str]]) -> str:
    return ", ".join(str(v) for v, _ in state) or "none"


def _children(state: list[tuple[int, str]]) -> list[tuple[int, str, int, int, list[tuple[int, str]]]]:
    """Every (a, op, b, value, new state) reachable in one step, larger operand first, no
    duplicate new states."""
    out, seen = [], set()
    for i in range(len(state)):
        for j in range(i + 1, len(state)):
            (x, ex), (y, ey) = state[i], state[j]
            if x < y:
                (x, ex), (y, ey) = (y, ey), (x, ex)
            rest = [s for k, s in enumerate(state) if k not in (i, j)]
            for op in "+-*/":
                value = countdown_apply(x, op, y)
                if value is None:
                    continue
                key = (tuple(sorted([v for v, _ in rest] + [value])), value)
                if key in seen:
                    continue
                seen.add(key)
                wrap = lambda e: e if e.isdigit() else f"({e})"  # noqa: E731
                out.append((x, op, y, value, [*rest, (value, f"{wrap(ex)} {op} {wrap(ey)}")]))
    return out


def countdown_solvable(values: list[int], target: int) -> bool:
    """Whether the target can be reached from `values` (exhaustive; a handful of numbers)."""
    if target in values:
        return True
    state = [(v, str(v)) for v in values]
    return any(countdown_solvable([v for v, _ in new], target) for *_, new in _children(state))


def _heuristic(state: list[tuple[int, str]], target: int) -> int:
    """How far the state's closest number is from the target (Stream of Search's ordering idea)."""
    return min(abs(v - target) for v, _ in state)


def countdown_search_tree(record: dict, rng: random.Random, max_nodes: int = 24, ordering: str = "heuristic") -> dict | None:
    """The depth-first search tree of a countdown record: steps in the order the search visits
    them (children by `ordering`: `heuristic`, closest to the target first, ties at random; or
    `random`), dead ends explored fully before the search backs up. Steps on the path that reaches
    the target are rated correct; every other visited step is a dead end (a complete search found
    no way on from it), rated incorrect with a critique. None when the search visits more than
    `max_nodes` steps without reaching the target, or the target is one of the numbers."""
    info = json.loads(record["ground_truth"])
    numbers, target = [int(n) for n in info["numbers"]], int(info["target"])
    if target in numbers:
        return None
    steps: list[dict] = []
    counter = iter(range(100_000))

    def visit(state, parent) -> list[dict] | None:
        children = _children(state)
        if ordering == "heuristic":
            children.sort(key=lambda c: (_heuristic(c[4], target), rng.random()))
        else:
            rng.shuffle(children)
        for a, op, b, value, new in children:
            if len(steps) >= max_nodes:
                return None
            step = {"id": f"n{next(counter)}", "parent": parent, "text": f"{a} {op} {b} = {value} "
                    f"(left: {_state_text(new)})", "rating": "incorrect"}
            steps.append(step)
            if value == target:
                step.update(rating="correct", answer=new[-1][1])
                return [step]
            if len(new) > 1:
                found = visit(new, step["id"])
                if found is not None:
                    step["rating"] = "correct"
                    return [step, *found]
                if len(steps) >= max_nodes:
                    return None
                step["critique"] = f"{_state_text(new)} cannot make {target}."
            else:
                step["critique"] = f"{value} is not {target}."
        return None

    path = visit([(n, str(n)) for n in numbers], None)
    if path is None:
        return None
    expression = path[-1]["answer"]
    return {"question": record["prompt"][-1]["content"], "answer": expression, "steps": steps,
            "ground_truth": record["ground_truth"]}


def countdown_search_trees(n: int, split: str = "train", seed: int = 0, max_nodes: int = 24,
                           ordering: str = "heuristic", **options) -> list[dict]:
    """Depth-first search trees (countdown_search_tree) for `n` countdown puzzles; puzzles the
    search does not solve within `max_nodes` steps are skipped, so there are `n` trees."""
    rng = random.Random(f"countdown_search_trees/{seed}/{split}")
    trees, asked = [], n
    while len(trees) < n:
        records = countdown(asked, split=split, seed=seed, **options)
        trees = [t for r in records if (t := countdown_search_tree(r, random.Random(f"{seed}/{r['ground_truth']}"),
                                                                   max_nodes, ordering)) is not None]
        asked = int(asked * 1.5) + 10
        if asked > 50 * n + 1000:
            raise ValueError(f"the search solves too few puzzles within max_nodes {max_nodes}; raise it")
    del rng
    return trees[:n]


def countdown_state(record: dict, previous_steps: list[str]) -> list[int] | None:
    """The numbers left after `previous_steps` (each 'a op b = c ...'), or None when one of
    them does not parse or uses a number that is not there."""
    info = json.loads(record["ground_truth"]) if isinstance(record.get("ground_truth"), str) else record["ground_truth"]
    state = [int(n) for n in info["numbers"]]
    for text in previous_steps:
        parsed = _parse_step(text)
        if parsed is None:
            return None
        a, op, b, c = parsed
        for x in (a, b):
            if x not in state:
                return None
            state.remove(x)
        state.append(c)
    return state


_STEP = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)")


def _parse_step(text: str):
    m = _STEP.match(text)
    return None if m is None else (int(m[1]), m[2], int(m[3]), int(m[4]))


def countdown_judge(record: dict, previous_steps: list[str], step: str):
    """The countdown step judge: a step `a op b = c` is correct when a and b are among the
    numbers left, the arithmetic is right, and the target can still be reached (exhaustively
    checked); else incorrect, with a critique naming why. None for a line that is no step
    (an answer line, a reflection)."""
    parsed = _parse_step(step)
    if parsed is None:
        return None
    info = json.loads(record["ground_truth"]) if isinstance(record.get("ground_truth"), str) else record["ground_truth"]
    target = int(info["target"])
    state = countdown_state(record, [s for s in previous_steps if _parse_step(s) is not None])
    a, op, b, c = parsed
    if state is None:
        return ("incorrect", "an earlier step does not follow.")
    rest = list(state)
    for x in (a, b):
        if x not in rest:
            return ("incorrect", f"{x} is not among the numbers left ({', '.join(map(str, state))}).")
        rest.remove(x)
    right = countdown_apply(a, op, b)
    if right != c:
        return ("incorrect", f"{a} {op} {b} is not {c}." if right is None else f"{a} {op} {b} is {right}, not {c}.")
    if not countdown_solvable(rest + [c], target):
        return ("incorrect", f"{', '.join(map(str, rest + [c]))} cannot make {target}.")
    return ("correct", None)
