"""Process reward models: step-labelled records from trees, PRM800K and Math-Shepherd rows; the
tokenisation that puts each step's label on its separator; the step metrics and ProcessBench's
first-wrong-step measure against brute force (issue 14)."""

import itertools
import json
from pathlib import Path

import pytest

from posttrain.data.formats import record_problem
from posttrain.data.loading import DataError, load_source
from posttrain.data.shapes import from_math_shepherd, from_prm800k, normalise
from posttrain.data.trees import build_traces, parse_tree, step_records
from posttrain.recipe.schema import DataSource
from posttrain.trainers.prm import IGNORE, encode, first_wrong, step_metrics, training_example

DATA = Path(__file__).parent / "data"
TREE = {"question": "Compute 66 - 20 + 90.", "answer": "136",
        "steps": [{"id": "a", "parent": None, "text": "66 - 20 = 46", "rating": "correct"},
                  {"id": "b", "parent": None, "text": "66 - 20 = 56", "rating": "incorrect", "critique": "46, not 56."},
                  {"id": "d", "parent": "b", "text": "56 + 90 = 146", "rating": "incorrect", "answer": "146"},
                  {"id": "c", "parent": "a", "text": "46 + 90 = 136", "rating": "correct", "answer": "136"},
                  {"id": "e", "parent": "a", "text": "46 + 90 = 126", "rating": "incorrect", "answer": "126"}]}


def test_a_tree_gives_the_labels_of_every_root_to_leaf_path():
    records = step_records(parse_tree(TREE))
    prompt = [{"role": "user", "content": "Compute 66 - 20 + 90."}]
    assert records == [
        {"prompt": prompt, "completions": ["66 - 20 = 46", "46 + 90 = 136"], "labels": [True, True]},
        {"prompt": prompt, "completions": ["66 - 20 = 46", "46 + 90 = 126"], "labels": [True, False]},
        {"prompt": prompt, "completions": ["66 - 20 = 56", "56 + 90 = 146"], "labels": [False, False]},
    ]
    out, stats = build_traces([TREE], "steps")
    assert out == records and stats["records"] == 3 and all(record_problem(r, "steps") is None for r in out)


def test_prm800k_rows_become_their_labelled_trajectories():
    rows = [json.loads(line) for line in (DATA / "prm800k.jsonl").read_text().splitlines()]
    found_error, phase1, solved = (from_prm800k(r) for r in rows)
    # phase 2: neutral steps (0) are correct; no completion chosen: the first one rated -1 ends it
    assert found_error["prompt"].startswith("What is the greatest common factor")
    assert found_error["labels"] == [True, True, False]
    assert found_error["completions"][2] == "I know that $200,\\!000 = 2^5\\cdot 10^4 = 2^9\\cdot 5^4$."
    # phase 1: the chosen alternative; the labeller's own step where none was chosen
    assert phase1["completions"] == ["7.8 minutes is the same as 7 minutes and 0.8 minutes.",
                                     "Right, and since there are 60 seconds in a minute, then there are 60 * 7 = 420 seconds in 7 minutes.",
                                     "And 0.8 minutes is 0.8 * 60 = 48 seconds.",
                                     "So in total there are 420 + 48 = 468 seconds.\n\n# Answer\n\n468"]
    assert phase1["labels"] == [True, True, True, True] and solved["labels"] == [True, True]
    assert normalise(rows[0], "steps") == found_error


def test_math_shepherd_rows_become_question_steps_and_labels():
    rows = [json.loads(line) for line in (DATA / "math_shepherd.jsonl").read_text().splitlines()]
    right, slip, robe = (from_math_shepherd(r) for r in rows)
    assert right["prompt"].startswith("Janet\u2019s ducks") and right["prompt"].endswith("farmers' market?")
    assert right["completions"][0] == "Janet's ducks lay 16 eggs per day."
    assert right["completions"][3].endswith("The answer is: 18") and right["labels"] == [True] * 4
    assert slip["labels"] == [True, True, False, False] and "13 - 4 = 8" in slip["completions"][2]
    assert robe["labels"] == [True, True] and robe["completions"][0] == "It takes 2/2=<<2/2=1>>1 bolt of white fiber"
    with pytest.raises(ValueError, match="'label' has"):
        from_math_shepherd({"input": "Q Step 1: a ки", "label": "Q Step 1: a ?"})


def test_a_file_of_each_shape_loads_and_a_bad_record_is_named(tmp_path):
    for name, labels in (("prm800k.jsonl", [3, 4, 2]), ("math_shepherd.jsonl", [4, 4, 2])):
        records = load_source(DataSource(path=str(DATA / name)), "steps").records
        assert [len(r["labels"]) for r in records] == labels
    bad = tmp_path / "steps.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "labels": [True, False]}) + "\n"
                   + json.dumps({"prompt": "p", "completions": ["a", "b"], "labels": [True]}) + "\n")
    with pytest.raises(DataError, match=r"steps.jsonl:2: 'labels' has 1 labels for 2 steps"):
        load_source(DataSource(path=str(bad)), "steps")


class CharTokenizer:
    """One token per character; bos 0, pad 1; ids are code points + 10."""
    bos_token_id, pad_token_id = 0, 1

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(ch) + 10 for ch in text]}


def test_each_label_sits_on_the_last_token_of_its_steps_separator():
    tokenizer = CharTokenizer()
    ids, positions = encode(tokenizer, "Q:", ["ab", "c"], separator="\n\n", max_length=None)
    assert ids == [0, ord("Q") + 10, ord(":") + 10, ord("a") + 10, ord("b") + 10, 20, 20, ord("c") + 10, 20, 20]
    assert positions == [6, 9]
    example = training_example(tokenizer, {"prompt": "Q:", "completions": ["ab", "c"], "labels": [True, False]},
                               {"separator": "\n\n", "max_length": None}, last_step_only=False)
    assert [(i, x) for i, x in enumerate(example["labels"]) if x != IGNORE] == [(6, 1), (9, 0)]
    last = training_example(tokenizer, {"prompt": "Q:", "completions": ["ab", "c"], "labels": [True, False]},
                            {"separator": "\n\n", "max_length": None}, last_step_only=True)
    assert [(i, x) for i, x in enumerate(last["labels"]) if x != IGNORE] == [(9, 0)]


def test_truncation_keeps_the_first_steps_labels_and_cuts_the_prompt_from_its_start():
    tokenizer = CharTokenizer()
    ids, positions = encode(tokenizer, "Q:", ["ab", "c"], separator="\n", max_length=7)
    assert len(ids) == 7 and positions == [5]
    ids, positions = encode(tokenizer, "QQQQ:", ["ab"], separator="\n", max_prompt_length=2, max_length=None)
    assert ids[:2] == [ord("Q") + 10, ord(":") + 10] and positions == [4]
    _, positions = encode(tokenizer, "Q", ["ab", "cd", "ef"], separator="\n", max_completion_length=6, max_length=None)
    assert positions == [4, 7]  # bos + "Q", then 3 tokens per step; the third starts past 6
    assert training_example(tokenizer, {"prompt": "Q" * 10, "completions": ["a"], "labels": [True]},
                            {"separator": "\n", "max_length": 5}, last_step_only=False) is None


def _brute_force(truth, predicted):
    pairs = [(t, p) for ts, ps in zip(truth, predicted) for t, p in zip(ts, ps)]
    tp = sum(1 for t, p in pairs if t is False and p is False)
    precision = tp / sum(1 for _, p in pairs if p is False)
    recall = tp / sum(1 for t, _ in pairs if t is False)
    err = [i for i, t in enumerate(truth) if False in t]
    ok = [i for i, t in enumerate(truth) if False not in t]
    first = lambda xs: xs.index(False) if False in xs else -1  # noqa: E731
    acc_err = sum(first(truth[i]) == first(predicted[i]) for i in err) / len(err)
    acc_ok = sum(first(predicted[i]) == -1 for i in ok) / len(ok)
    harmonic = lambda a, b: 2 * a * b / (a + b) if a + b else 0.0  # noqa: E731
    return sum(t == p for t, p in pairs) / len(pairs), harmonic(precision, recall), harmonic(acc_err, acc_ok)


def test_step_metrics_and_first_wrong_step_against_brute_force():
    truth = [[True, True, False], [True, True], [False, True], [True, False, False], [True]]
    for predicted_flat in itertools.islice(itertools.product([True, False], repeat=11), 0, 2048, 37):
        flat = iter(predicted_flat)
        predicted = [[next(flat) for _ in t] for t in truth]
        metrics = step_metrics(truth, predicted)
        first = metrics["first_wrong_step"]
        if not any(not p for ps in predicted for p in ps):
            assert metrics["incorrect_precision"] is None  # nothing flagged: no precision to give
            continue
        accuracy, f1, processbench = _brute_force(truth, predicted)
        assert metrics["step_accuracy"] == pytest.approx(accuracy)
        assert metrics["incorrect_f1"] == pytest.approx(f1)
        assert first["f1"] == pytest.approx(processbench)
    assert first_wrong([True, False, False]) == 1 and first_wrong([True]) == -1
    perfect = step_metrics(truth, truth)
    assert perfect["step_accuracy"] == 1 and perfect["first_wrong_step"]["f1"] == 1
    assert perfect["first_wrong_step"]["erroneous_solutions"] == 3 and perfect["first_wrong_step"]["correct_solutions"] == 2
