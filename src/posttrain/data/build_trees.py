"""Reasoning trees sampled from a causal LM: `posttrain data build-trees`.

For each task record the model writes a solution one step (one line) at a time. From every
node of the frontier it samples `width` candidate next steps (continuing the partly written
answer); `beam` nodes per question stay in the frontier; expansion stops at `depth` steps or
when a step declares the final answer (a line the answer extractor reads, e.g. `Answer: 42` or
`\\boxed{42}`; when the model writes it on the line after a step, it belongs to that step).

Ratings:
- a step with a final answer: the task's verifier (the record's `verifier`, or a named reward)
  decides; a wrong answer's critique says which answer was expected;
- a step checker, where the task allows one (`arithmetic`: each step is compared with the worked
  solution's step, and the critique names the slip), a judge function named by dotted path,
  `judge(record, previous_steps, step) -> (rating, critique) | None` (None: cannot tell), or a
  model that rates steps (`{name: reward_model, path: PRM}`, `{name: llm_judge, path: LM}`:
  rewards/model_reward.py, rewards/llm_judge.py), which rates each level's steps in batches;
- otherwise final-answer correctness propagates up: a step is correct when some continuation
  below it reaches the right answer, else incorrect ("no continuation from here reached ...").

Trees without a correct path to the gold answer cannot give shortcut or journey traces: they are
dropped and counted, unless `keep_unsolved` keeps them (their steps are still labelled, which a
process reward model's step records use).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from posttrain.rewards.answers import extract_final_answer
from posttrain.sampling import Sampling, as_engine, score_answers
from posttrain.tasks import resolve_judge


@dataclass
class Node:
    id: str
    parent: str | None
    text: str
    depth: int
    rating: str | None = None
    critique: str | None = None
    answer: str | None = None


def _answer_of(line: str) -> str | None:
    return extract_final_answer(line) if line.strip() else None


def split_step(generated: str) -> tuple[str, str | None]:
    """(step text, final answer declared with it or None) from one sampled continuation."""
    lines = generated.split("\n")
    first = lines[0].strip()
    answer = _answer_of(first)
    if answer is None and len(lines) > 1:
        answer = _answer_of(lines[1])
    return first, answer


def build_trees(model, tokenizer, records: list[dict], *, width: int = 4, depth: int = 8, beam: int = 2,
                temperature: float = 1.0, step_tokens: int = 32, batch_size: int = 64, reward: str = "verifier",
                judge=None, include_gold: bool = False, keep_unsolved: bool = False,
                seed: int = 0) -> tuple[list[dict], Counter]:
    engine = as_engine(model, tokenizer, batch_size)  # a model in memory, or an engine
    judge = resolve_judge(judge)
    rng = random.Random(f"build_trees/{seed}")
    nodes: list[dict[str, Node]] = [{} for _ in records]
    frontier: list[list[Node | None]] = [[None] for _ in records]  # None: the empty answer
    stats = Counter(questions=len(records))

    def path(i: int, node: Node | None) -> list[str]:
        steps = []
        while node is not None:
            steps.append(node.text)
            node = nodes[i][node.parent] if node.parent else None
        return steps[::-1]

    for level in range(depth):
        jobs = [(i, node) for i, front in enumerate(frontier) for node in front]
        if not jobs:
            break
        prefixes = ["".join(step + "\n" for step in path(i, node)) for i, node in jobs]
        samples = engine.generate([records[i]["prompt"] for i, _ in jobs], width,
                                  Sampling(step_tokens, temperature, seed=seed + level), prefixes, trim_unfinished=True)
        created: list[tuple[int, Node]] = []
        for (i, parent), group in zip(jobs, samples):
            seen = set()
            for generated in group:
                text, answer = split_step(generated)
                if not text or text in seen:
                    continue
                seen.add(text)
                node = Node(id=f"s{len(nodes[i])}", parent=parent.id if parent else None, text=text,
                            depth=level + 1, answer=answer)
                nodes[i][node.id] = node
                created.append((i, node))
        answered = [(i, n) for i, n in created if n.answer is not None]
        if answered:
            scores = score_answers(reward, [records[i] for i, _ in answered], [[f"Answer: {n.answer}"]
                                                                              for _, n in answered])
            for (i, node), (score,) in zip(answered, scores):
                if score < 1.0:
                    node.rating = "incorrect"
                    node.critique = f"the final answer {node.answer} is wrong; it is {gold_answer(records[i])}."
        items = [(records[i], path(i, nodes[i][node.parent]) if node.parent else [], node.text) for i, node in created]
        if judge is None:
            verdicts = [None] * len(items)
        elif hasattr(judge, "rate_many"):  # a model judge rates a level's steps in batches
            verdicts = judge.rate_many(items)
        else:
            verdicts = [judge(*item) for item in items]
        for (i, node), verdict in zip(created, verdicts):
            if verdict is None:
                continue
            if node.rating is None:
                node.rating, node.critique = verdict
            elif verdict[0] == "incorrect":  # a wrong answer: the checker's critique is the more specific
                node.critique = verdict[1]
        frontier = [[] for _ in records]
        for i, node in created:
            if node.answer is None:  # answered steps end their branch
                frontier[i].append(node)
        for i, front in enumerate(frontier):  # steps rated correct first; wrong branches if room
            good = [n for n in front if n.rating == "correct"]
            rest = [n for n in front if n.rating != "correct"]
            rng.shuffle(good)
            rng.shuffle(rest)
            frontier[i] = (good + rest)[:beam]

    trees = []
    stats["sampled steps"] = sum(len(tree_nodes) for tree_nodes in nodes)
    for record, tree_nodes in zip(records, nodes):
        if include_gold:
            stats["gold steps added"] += _add_gold_path(tree_nodes, record)
        _propagate(tree_nodes, record["ground_truth"])
        # Every answer in the tree was rated by the reward: a correct leaf is a right answer even
        # where it differs from the gold one (countdown: any expression that reaches the target).
        tree = {"question": _question(record), "answer": gold_answer(record), "answers_verified": True,
                "steps": [{"id": n.id, "parent": n.parent, "text": n.text, "rating": n.rating,
                           **({"critique": n.critique} if n.critique else {}),
                           **({"answer": n.answer} if n.answer is not None else {})}
                          for n in tree_nodes.values()]}
        if _has_correct_path(tree_nodes):
            trees.append(tree)
        elif keep_unsolved and tree["steps"]:
            trees.append(tree)
            stats["kept: no correct path"] += 1
        else:
            stats["dropped: no correct path"] += 1
    stats["trees"] = len(trees)
    stats["steps"] = sum(len(t["steps"]) for t in trees)
    stats["incorrect steps"] = sum(s["rating"] == "incorrect" for t in trees for s in t["steps"])
    return trees, stats


def _add_gold_path(nodes: dict[str, Node], record: dict) -> int:
    """Graft the record's worked solution into the tree as a correct path (reusing the model's
    identical steps), so every question keeps a correct path; returns the steps added."""
    completion = record.get("completion")
    if not completion:
        return 0
    text = completion[-1]["content"] if isinstance(completion, list) else completion
    steps = [line.strip() for line in text.split("\n") if line.strip() and _answer_of(line) is None]
    parent, added = None, 0
    for depth, step in enumerate(steps, start=1):
        same = next((n for n in nodes.values() if n.parent == parent and n.text == step), None)
        if same is None:
            same = Node(id=f"g{depth}", parent=parent, text=step, depth=depth)
            while same.id in nodes:
                same.id += "'"
            nodes[same.id] = same
            added += 1
        same.rating, same.critique = "correct", None
        parent = same.id
    if parent is not None:
        last = nodes[parent]
        children = [n for n in nodes.values() if n.parent == parent]
        if children:  # the model went on past the solution: close the gold path with its own leaf
            leaf = Node(id=f"g{len(steps) + 1}", parent=parent, text=f"Answer: {gold_answer(record)}",
                        depth=len(steps) + 1, rating="correct", answer=gold_answer(record))
            nodes[leaf.id] = leaf
            added += 1
        else:
            last.answer = gold_answer(record)
    return added


def gold_answer(record: dict) -> str:
    """The record's final answer as its worked solution writes it (`Answer: ...`), else its
    ground truth: the same for numeric tasks; for countdown, the expression, not the JSON."""
    completion = record.get("completion")
    text = (completion[-1]["content"] if isinstance(completion, list) else completion) if completion else None
    answer = extract_final_answer(text) if text else None
    return answer if answer is not None else str(record["ground_truth"])


def _question(record: dict) -> str:
    prompt = record["prompt"]
    return prompt if isinstance(prompt, str) else next(m["content"] for m in prompt if m["role"] == "user")


def _propagate(nodes: dict[str, Node], gold) -> None:
    """Unrated steps: correct when a correct answer lies below them, else incorrect."""
    children: dict[str | None, list[Node]] = {}
    for node in nodes.values():
        children.setdefault(node.parent, []).append(node)

    def reaches(node: Node) -> bool:
        below = [reaches(child) for child in children.get(node.id, [])]  # rate every descendant
        if node.answer is not None:
            ok = node.rating != "incorrect"
        else:
            ok = any(below) and node.rating != "incorrect"
        if node.rating is None:
            node.rating = "correct" if ok else "incorrect"
            if not ok:
                node.critique = f"no continuation from this step reached the answer {gold}."
        return ok

    for root in children.get(None, []):
        reaches(root)


def _has_correct_path(nodes: dict[str, Node]) -> bool:
    for node in nodes.values():
        if node.answer is None or node.rating != "correct":
            continue
        walk = node
        while walk is not None and walk.rating == "correct":
            walk = nodes[walk.parent] if walk.parent else None
        if walk is None:
            return True
    return False
