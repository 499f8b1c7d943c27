"""Generated arithmetic: seeded, disjoint splits, worked steps that are right."""

import re

from posttrain.tasks import arithmetic, split_of
from posttrain.rewards.numeric import numeric_reward


def test_same_seed_same_records_other_seed_other_records():
    assert arithmetic(50, seed=1) == arithmetic(50, seed=1)
    assert arithmetic(50, seed=1) != arithmetic(50, seed=2)


def test_train_and_heldout_are_disjoint_for_any_seed():
    train = {r["prompt"][0]["content"] for r in arithmetic(3000, "train", seed=0)}
    heldout = {r["prompt"][0]["content"] for r in arithmetic(500, "heldout", seed=7)}
    assert len(train) == 3000 and len(heldout) == 500 and not train & heldout
    assert all(split_of(q) == "heldout" for q in heldout)


def test_every_step_and_answer_is_correct_and_non_negative():
    for record in arithmetic(500, seed=4):
        question = record["prompt"][0]["content"]
        expression = re.fullmatch(r"Compute (.*)\.", question).group(1)
        lines = record["completion"][0]["content"].split("\n")
        assert lines[-1] == f"Answer: {record['ground_truth']}"
        assert int(record["ground_truth"]) == _evaluate(expression)
        for step in lines[:-1]:
            left, right = step.split(" = ")
            assert _evaluate(left) == int(right) >= 0
        assert numeric_reward([record["completion"]], [record["ground_truth"]]) == [1.0]


def _evaluate(expression: str) -> int:
    tokens = expression.split()
    total = int(tokens[0])
    for op, value in zip(tokens[1::2], tokens[2::2]):
        total = total + int(value) if op == "+" else total - int(value)
    return total
