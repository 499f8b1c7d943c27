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
    # answers_verified: every answer in the tree was rated by a verifier (sampled trees), so a
    # correct leaf is a right answer even where it differs from `answer` (countdown expressions)
    verified: bool = False


def _same_answer(a: str | None, b: str) -> bool:
    if a is None:
        return False
    x, y = extract_number(str(a)), extract_number(str(b))
    return x == y if x is not None and y is not None else str(a).strip() == str(b).strip()


def parse_tree(record: dict, solved: bool = True) -> Tree:
    """Check and link a tree record. Raises TreeError naming the step and the problem. A tree
    must have a path of correct steps to the gold answer unless `solved` is False (step
    records label every step of every path, and need none)."""
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
    tree = Tree(str(record["question"]), str(record["answer"]), roots, steps, bool(record.get("answers_verified")))
    if solved and not correct_paths(tree):
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
            if _same_answer(step.answer, tree.answer) or (tree.verified and step.answer is not None):
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
    # detours: the correct path with detours into wrong siblings; search: every step of the tree
    # in the order it lists them (a search tree's visiting order), each dead end reflected on.
    journey: str = "detours"
    # Segments of a journey trace that get no loss (SFT): wrong (the wrong steps), reflection,
    # backtrack. The trace text is the same; only the loss mask changes.
    mask: tuple[str, ...] = ()


SEGMENTS = ("step", "wrong", "reflection", "backtrack", "answer")
MASKABLE = ("wrong", "reflection", "backtrack")


def shortcut_trace(tree: Tree, rng: random.Random, options: TraceOptions = TraceOptions()) -> str:
    return _text(_shortcut_lines(tree, rng, options))


def _shortcut_lines(tree: Tree, rng: random.Random, options: TraceOptions) -> list[tuple[str, str]]:
    path = rng.choice(correct_paths(tree))
    return [*(("step", s.text) for s in path), *(("answer", x) for x in _answer_line(path, tree, options))]


def _text(lines: list[tuple[str, str]]) -> str:
    return "\n".join(text for _, text in lines)


def _answer_line(path: list[Step], tree: Tree, options: TraceOptions) -> list[str]:
    """The closing answer line, unless the path's last step already is that line (trees
    sampled from a model may end a path with the model's own `Answer: ...` step)."""
    answer = path[-1].answer if tree.verified and path[-1].answer is not None else tree.answer
    line = options.answer_line.format(answer=answer)
    return [] if path[-1].text.strip() == line.strip() else [line]


def _wrong_branch(step: Step, depth: int) -> list[Step]:
    branch = [step]
    while len(branch) < depth and branch[-1].children:
        branch.append(branch[-1].children[0])
    return branch


def journey_trace(tree: Tree, rng: random.Random, options: TraceOptions = TraceOptions()) -> tuple[str, int]:
    """A correct path with detours (or, with options.journey search, the whole search); returns
    the text and the number of detours (dead ends) taken."""
    lines, taken = journey_lines(tree, rng, options)
    return _text(lines), taken


def journey_lines(tree: Tree, rng: random.Random, options: TraceOptions = TraceOptions()) -> tuple[list[tuple[str, str]], int]:
    """The journey trace as (segment, line) pairs (segments: SEGMENTS), and the detours taken."""
    if options.journey == "search":
        return _search_lines(tree, options)
    path = rng.choice(correct_paths(tree))
    lines, taken = [], 0
    for step in path:
        wrong = _siblings(tree, step)
        if wrong and taken < options.detours and rng.random() < options.detour_probability:
            detour = rng.choice(wrong)
            branch = _wrong_branch(detour, options.detour_depth)
            lines += [("wrong", s.text) for s in branch]
            critique = detour.critique or "this step does not follow."
            lines.append(("reflection", options.reflection.format(critique=critique, step=detour.text)))
            lines.append(("backtrack", options.backtrack.format(critique=critique, step=detour.text)))
            taken += 1
        lines.append(("step", step.text))
    lines += [("answer", x) for x in _answer_line(path, tree, options)]
    return lines, taken


def _search_lines(tree: Tree, options: TraceOptions) -> tuple[list[tuple[str, str]], int]:
    """Depth first through the tree in the order its steps are listed, up to the first correct
    leaf with the answer. A dead-end step with steps below it, once they all failed, is followed
    by a reflection on its critique and a backtrack; a dead-end leaf (a last number that is not
    the target) by nothing: the next line tries its next sibling."""
    lines: list[tuple[str, str]] = []
    dead_ends = 0

    def visit(step: Step) -> bool:
        nonlocal dead_ends
        lines.append(("step" if step.correct else "wrong", step.text))
        if step.correct and not step.children and _same_answer(step.answer, tree.answer):
            return True
        for child in step.children:
            if visit(child):
                return True
        dead_ends += 1
        if step.children:
            critique = step.critique or "this does not reach the answer."
            lines.append(("reflection", options.reflection.format(critique=critique, step=step.text)))
            lines.append(("backtrack", options.backtrack.format(critique=critique, step=step.text)))
        return False

    for root in tree.roots:
        if visit(root):
            break
    lines.append(("answer", options.answer_line.format(answer=tree.answer)))
    return lines, dead_ends


def masked_spans(lines: list[tuple[str, str]], mask: tuple[str, ...]) -> list[list[int]]:
    """Character spans [start, end) of the joined text whose lines are in a `mask` segment
    (the newline after a masked line is masked with it)."""
    spans, at = [], 0
    for i, (segment, text) in enumerate(lines):
        end = at + len(text) + (1 if i < len(lines) - 1 else 0)
        if segment in mask:
            if spans and spans[-1][1] == at:
                spans[-1][1] = end
            else:
                spans.append([at, end])
        at = end
    return spans


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


def step_records(tree: Tree) -> list[dict]:
    """Step-labelled records for a process reward model: one per root-to-leaf path of the tree
    (every path, right or wrong), each step labelled by its rating."""
    records = []

    def walk(step: Step, path: list[Step]) -> None:
        path = [*path, step]
        if not step.children:
            records.append({"prompt": [{"role": "user", "content": tree.question}],
                            "completions": [s.text for s in path], "labels": [s.correct for s in path]})
        for child in step.children:
            walk(child, path)

    for root in tree.roots:
        walk(root, [])
    return records


def build_traces(records: list[dict], kind: str, seed: int = 0, options: TraceOptions = TraceOptions()):
    """SFT records (kind shortcut | journey), preference pairs (kind pairs) or step-labelled
    paths (kind steps) from trees, and counts: traces, detours, characters and words."""
    rng = random.Random(f"traces/{kind}/{seed}")
    out, stats = [], {"trees": len(records), "records": 0, "detours": 0, "characters": 0, "words": 0}
    for record in records:
        tree = parse_tree(record, solved=kind != "steps")
        if kind == "pairs":
            out += preference_pairs(tree, options)
            continue
        if kind == "steps":
            out += step_records(tree)
            continue
        if kind == "shortcut":
            lines = _shortcut_lines(tree, rng, options)
        else:
            lines, taken = journey_lines(tree, rng, options)
            stats["detours"] += taken
        text = _text(lines)
        stats["characters"] += len(text)
        stats["words"] += len(text.split())
        record = {"prompt": [{"role": "user", "content": tree.question}],
                  "completion": [{"role": "assistant", "content": text}]}
        if options.mask:
            record["loss_mask"] = masked_spans(lines, options.mask)
            stats["masked characters"] = stats.get("masked characters", 0) + sum(e - b for b, e in record["loss_mask"])
        out.append(record)
    stats["records"] = len(out)
    return out, stats
