"""Reasoning trees: validation, shortcut and journey traces, pairs, procedural trees."""

import random

import pytest

from posttrain.data.loading import load_source
from posttrain.data.trees import (TraceOptions, TreeError, build_traces, correct_paths, journey_trace, parse_tree,
                                  preference_pairs, shortcut_trace)
from posttrain.errors import DataError
from posttrain.recipe import DataSource, TracesSpec
from posttrain.rewards.numeric import extract_number
from posttrain.tasks import arithmetic, arithmetic_trees
from posttrain.tasks.arithmetic import arithmetic_tree

TREE = {
    "question": "Compute 66 - 20 + 90.", "answer": "136",
    "steps": [
        {"id": "a", "parent": None, "text": "66 - 20 = 46", "rating": "correct"},
        {"id": "b", "parent": None, "text": "66 - 20 = 56", "rating": "incorrect", "critique": "66 - 20 is 46, not 56."},
        {"id": "b2", "parent": "b", "text": "56 + 90 = 146", "rating": "incorrect", "answer": "146"},
        {"id": "c", "parent": "a", "text": "46 + 90 = 136", "rating": "correct", "answer": "136"},
        {"id": "d", "parent": "a", "text": "46 - 90 = -44", "rating": "incorrect", "critique": "the problem adds 90."},
    ],
}


def with_steps(steps):
    return {**TREE, "steps": steps}


@pytest.mark.parametrize("steps,message", [
    ([{**TREE["steps"][0], "rating": None}] + TREE["steps"][1:], "step a: rating is None; every step must be rated"),
    (TREE["steps"] + [{"id": "x", "parent": "nowhere", "text": "t", "rating": "correct"}], "parent 'nowhere' does not exist"),
    (TREE["steps"] + [{"id": "a", "parent": None, "text": "t", "rating": "correct"}], "step a: duplicate id"),
    ([{"id": "p", "parent": "q", "text": "t", "rating": "correct"}, {"id": "q", "parent": "p", "text": "u", "rating": "correct"}],
     "form a cycle"),
    ([s for s in TREE["steps"] if s["id"] != "c"], "no path of correct steps reaches the gold answer"),
    ([{**s, "answer": "135"} if s["id"] == "c" else s for s in TREE["steps"]], "no path of correct steps"),
])
def test_malformed_trees_are_named(steps, message):
    with pytest.raises(TreeError, match=message):
        parse_tree(with_steps(steps))


def test_shortcut_is_the_correct_path():
    tree = parse_tree(TREE)
    assert [s.id for s in correct_paths(tree)[0]] == ["a", "c"]
    assert shortcut_trace(tree, random.Random(0)) == "66 - 20 = 46\n46 + 90 = 136\nAnswer: 136"


def test_journey_detours_reflect_with_the_critique_and_backtrack():
    tree = parse_tree(TREE)
    text, taken = journey_trace(tree, random.Random(0), TraceOptions(detours=2, detour_depth=2))
    assert taken == 2
    assert text.split("\n") == [
        "66 - 20 = 56", "56 + 90 = 146", "Wait, that is wrong: 66 - 20 is 46, not 56.",
        "Let me go back and redo that step.", "66 - 20 = 46",
        "46 - 90 = -44", "Wait, that is wrong: the problem adds 90.", "Let me go back and redo that step.",
        "46 + 90 = 136", "Answer: 136"]
    one, taken = journey_trace(tree, random.Random(0), TraceOptions(detours=1, reflection="Hmm: {critique}",
                                                                    backtrack="Back to {step}?"))
    assert taken == 1 and "Hmm: 66 - 20 is 46, not 56.\nBack to 66 - 20 = 56?" in one
    none, taken = journey_trace(tree, random.Random(0), TraceOptions(detour_probability=0.0))
    assert taken == 0 and none == shortcut_trace(tree, random.Random(0))


def test_an_unsolved_tree_still_labels_every_step_but_gives_no_shortcut():
    unsolved = with_steps([s for s in TREE["steps"] if s["id"] != "c"])
    records, _ = build_traces([unsolved], "steps")
    assert [r["labels"] for r in records] == [[True, False], [False, False]]  # a -> d, b -> b2
    with pytest.raises(TreeError, match="no path of correct steps"):
        build_traces([unsolved], "shortcut")


def test_step_pairs_share_the_prefix_and_diverge_at_the_wrong_step():
    pairs = preference_pairs(parse_tree(TREE))
    assert len(pairs) == 2
    assert pairs[0]["rejected"][0]["content"] == "66 - 20 = 56\n56 + 90 = 146\nAnswer: 146"
    assert pairs[1]["chosen"][0]["content"] == "66 - 20 = 46\n46 + 90 = 136\nAnswer: 136"
    assert pairs[1]["rejected"][0]["content"] == "66 - 20 = 46\n46 - 90 = -44"


def test_shortcut_and_journey_come_from_the_same_trees_and_are_seeded():
    trees = arithmetic_trees(40, seed=3)
    options = TraceOptions(detours=3, detour_probability=0.5)  # the seed decides which detours
    short, short_stats = build_traces(trees, "shortcut", seed=1)
    journey, journey_stats = build_traces(trees, "journey", seed=1, options=options)
    assert [r["prompt"] for r in short] == [r["prompt"] for r in journey]
    assert journey_stats["words"] > short_stats["words"] and journey_stats["detours"] > 0
    assert build_traces(trees, "journey", seed=1, options=options)[0] == journey
    assert build_traces(trees, "journey", seed=2, options=options)[0] != journey


def test_procedural_wrong_steps_are_wrong_and_critiques_say_why():
    for record in arithmetic(200, seed=4):
        tree = parse_tree(arithmetic_tree(record, random.Random(0), wrong_per_step=2))
        for step in tree.steps.values():
            left, right = step.text.split(" = ")
            a, op, b = left.split()
            value = int(a) + int(b) if op == "+" else int(a) - int(b)
            if step.correct:
                assert value == int(right)
            elif step.critique and "continues from a wrong value" not in step.critique:
                wrong_value = value != int(right) or step.text not in record["completion"][0]["content"]
                assert wrong_value and step.critique
        assert extract_number(correct_paths(tree)[0][-1].answer) == int(record["ground_truth"])


def test_traces_in_a_recipe_source_and_bad_trees_named(tmp_path):
    records = load_source(DataSource(task="arithmetic_trees", n=20, traces=TracesSpec(kind="journey")), "sft").records
    assert len(records) == 20 and all("Wait, that is wrong" in r["completion"][0]["content"] for r in records)
    bad = tmp_path / "trees.jsonl"
    bad.write_text('{"question": "q", "answer": "1", "steps": [{"id": "a", "parent": null, "text": "x", "rating": "maybe"}]}\n')
    with pytest.raises(DataError, match=rf"{bad}:1: not a valid reasoning tree: step a: rating is 'maybe'"):
        load_source(DataSource(path=str(bad), traces=TracesSpec(kind="shortcut")), "sft")


def test_countdown_trees_have_a_verified_correct_path_and_critiqued_mistakes():
    from posttrain.tasks import countdown, countdown_trees
    from posttrain.rewards import REWARDS

    trees = countdown_trees(40, seed=3, wrong_per_step=2, wrong_depth=2)
    assert trees == countdown_trees(40, seed=3, wrong_per_step=2, wrong_depth=2)  # seeded
    records = countdown(40, seed=3)
    shortcut, _ = build_traces(trees, "shortcut", seed=0)
    scores = REWARDS["verifier"]([t["completion"][0]["content"] for t in shortcut],
                                 verifier=[r["verifier"] for r in records],
                                 ground_truth=[r["ground_truth"] for r in records])
    assert scores == [1.0] * 40  # every shortcut trace ends in an expression that reaches the target
    for tree in trees:
        parse_tree(tree)
        wrong = [s for s in tree["steps"] if s["rating"] == "incorrect"]
        assert wrong and all(s.get("critique") for s in wrong)
        for s in wrong:  # each mistake states a false equation, leaves the target's path, or misreads
            assert any(k in s["critique"] for k in (", not ", "leads away from", "not one of the numbers",
                                                     "continues from a wrong value"))
