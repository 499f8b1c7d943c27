"""Countdown, loaders for public verifiable datasets, and the per-record verifier dispatch."""

import json

import pytest

from posttrain.data.loading import load_source
from posttrain.tasks import countdown, split_of
from posttrain.errors import DataError
from posttrain.recipe import DataSource
from posttrain.rewards import REWARDS
from posttrain.rewards.countdown import countdown_correct


def test_countdown_solutions_verify_and_splits_are_disjoint():
    train, heldout = countdown(300, "train", seed=1), countdown(100, "heldout", seed=1)
    for record in train[:100]:
        truth = json.loads(record["ground_truth"])
        assert REWARDS["countdown"]([record["completion"]], ground_truth=[record["ground_truth"]]) == [1.0]
        assert 0 < truth["target"] <= 200 and len(truth["numbers"]) == 4
    prompts = lambda rs: {r["prompt"][0]["content"] for r in rs}  # noqa: E731
    assert not prompts(train) & prompts(heldout)
    assert all(split_of(p) == "heldout" for p in prompts(heldout))


def test_countdown_difficulty_knobs():
    records = countdown(20, count=6, max_number=9, max_target=50, seed=2)
    for record in records:
        truth = json.loads(record["ground_truth"])
        assert len(truth["numbers"]) == 6 and max(truth["numbers"]) <= 9 and truth["target"] <= 50


@pytest.mark.parametrize("expression,numbers,target,ok", [
    ("(6 - 2) * 5", [2, 5, 6], 20, True),
    ("6 * 5 - 2 * 5", [2, 5, 6], 20, False),          # 5 used twice
    ("(25 - 5) / 4 * 8", [4, 5, 8, 25], 40, True),     # exact division
    ("7 / 2 * 2", [2, 2, 7], 7, True),                 # fractions stay exact
    ("5 / 0", [0, 5], 0, False),
    ("__import__('os').system('true')", [1], 1, False),
    ("2 ** 10", [2, 10], 1024, False),                 # only + - * /
    ("(" * 300 + "1" + ")" * 300, [1], 1, False),       # too long to be an answer
    (None, [1], 1, False),
])
def test_countdown_checker(expression, numbers, target, ok):
    assert countdown_correct(expression, numbers, target) is ok


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_gsm8k_math_and_tulu_records_map_to_tasks(tmp_path):
    gsm8k = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "Tom has 3 apples and buys 1,200 more. How many?", "answer": "3 + 1200 = 1203\n#### 1,203"}])
    math = write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "Half of one?", "solution": r"It is $\boxed{\frac{1}{2}}$.", "level": "Level 1", "type": "Algebra"}])
    tulu = write_jsonl(tmp_path / "tulu.jsonl", [
        {"messages": [{"role": "user", "content": "Write in lowercase."}],
         "ground_truth": '{"func_name": "validate_lowercase"}', "dataset": "ifeval"},
        {"messages": [{"role": "user", "content": "2+2?"}], "ground_truth": "4", "dataset": "gsm8k"}])
    (g,) = load_source(DataSource(path=gsm8k, format="gsm8k"), "task").records
    assert g["ground_truth"] == "1203" and g["verifier"] == "numeric"
    (m,) = load_source(DataSource(path=math, format="math"), "task").records
    assert m["ground_truth"] == r"\frac{1}{2}" and m["verifier"] == "math" and m["level"] == "Level 1"
    t = load_source(DataSource(path=tulu, format="tulu3_rlvr"), "task").records
    assert [r["verifier"] for r in t] == ["ifeval", "numeric"]
    completions = ["the number is 1203", r"so \boxed{0.5}"]
    assert REWARDS["verifier"](completions, verifier=["numeric", "math"],
                               ground_truth=[g["ground_truth"], m["ground_truth"]]) == [1.0, 1.0]
    scores = REWARDS["verifier"](["all lower", "Answer: 4"], verifier=[r["verifier"] for r in t],
                                 ground_truth=[r["ground_truth"] for r in t])
    assert scores == [1.0, 1.0]


def test_a_record_that_does_not_fit_its_format_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "q", "answer": "a\n#### 1"}, {"question": "q2"}])
    with pytest.raises(DataError, match=r"gsm8k.jsonl:2: not a gsm8k record: missing column 'answer'"):
        load_source(DataSource(path=path, format="gsm8k"), "task")


def test_gsm8k_and_math_solutions_train_sft_as_worked_answers(tmp_path):
    math = write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "Half of one?", "solution": r"It is $\boxed{\frac{1}{2}}$."}])
    gsm8k = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"}])
    (m,) = load_source(DataSource(path=math, format="math"), "sft").records
    assert m["prompt"] == [{"role": "user", "content": "Half of one?"}]
    assert m["completion"] == [{"role": "assistant", "content": r"It is $\boxed{\frac{1}{2}}$."}]
    (g,) = load_source(DataSource(path=gsm8k, format="gsm8k"), "sft").records
    assert g["completion"][0]["content"] == "1 + 1 = 2\n#### 2"
