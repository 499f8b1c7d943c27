"""The experiment's reflection statistics, on answers written by hand."""

import json

from posttrain.experiments.journey import reflection_stats
from posttrain.recipe import TracesSpec

QUICKSTART_WORDING = TracesSpec(kind="journey", reflection="Wait, {critique}", backtrack="Let me redo that step.")


def test_reflections_are_counted_and_checked_against_the_worked_solution(tmp_path):
    samples = tmp_path / "samples.jsonl"
    prompt = [{"role": "user", "content": "Compute 66 - 20 + 90."}]  # 66 - 20 = 46, 46 + 90 = 136
    answers = [
        "66 - 20 = 56\nWait, 66 - 20 is 46, not 56.\nLet me redo that step.\n66 - 20 = 46\n46 + 90 = 136\nAnswer: 136",
        "66 - 20 = 46\nWait, 66 - 20 is 45, not 46.\nLet me redo that step.\n66 - 20 = 45\n45 + 90 = 135\nAnswer: 135",
        "66 - 20 = 46\n46 + 90 = 136\nAnswer: 136",
        "66 - 20 = 46\n46 + 90 = 146\nAnswer: 146",
    ]
    samples.write_text(json.dumps({"prompt": prompt, "answers": answers, "scores": [1, 0, 1, 0]}) + "\n")
    stats = reflection_stats(samples, QUICKSTART_WORDING)
    assert stats["with_reflection"] == 0.5  # the first two answers reflect
    assert stats["reflection_after_wrong_step"] == 0.5  # the first after a real slip, the second after a right step
    # steps written: 3 + 3 + 2 + 2 = 10; wrong: "66 - 20 = 56", "66 - 20 = 45", "45 + 90 = 135", "46 + 90 = 146"
    assert stats["wrong_steps"] == 0.4


def test_the_statistics_follow_the_recipes_wording_and_the_questions_task(tmp_path):
    """Another reflection and backtrack wording is recognised as such, not counted as steps; a
    task without a worked solution and a step judge (countdown) gives no step figures."""
    samples = tmp_path / "samples.jsonl"
    prompt = [{"role": "user", "content": "Compute 66 - 20 + 90."}]
    answers = ["66 - 20 = 56\nHmm, 66 - 20 is 46, not 56.\nBack up one step.\n66 - 20 = 46\n46 + 90 = 136\nAnswer: 136",
               "66 - 20 = 46\n46 + 90 = 136\nAnswer: 136"]
    samples.write_text(json.dumps({"prompt": prompt, "answers": answers, "scores": [1, 1]}) + "\n")
    wording = TracesSpec(kind="journey", reflection="Hmm, {critique}", backtrack="Back up one step.")
    stats = reflection_stats(samples, wording)
    assert stats == {"with_reflection": 0.5, "reflection_after_wrong_step": 1.0, "wrong_steps": 1 / 5}
    # With the default wording ("Wait, ..."), the reflection line is not recognised, and both it and
    # the backtrack line are judged as steps: the figures change, which is why the wording matters.
    assert reflection_stats(samples, TracesSpec(kind="journey"))["with_reflection"] == 0.0
    no_steps = reflection_stats(samples, wording, task="countdown")
    assert no_steps == {"with_reflection": 0.5, "reflection_after_wrong_step": None, "wrong_steps": None}


def test_the_trees_block_is_checked_when_the_recipe_loads(capsys):
    from posttrain.cli import main

    recipe = "recipes/quickstart/journey-vs-shortcut.yaml"
    for override, message in [
        ("trees.width=abc", "trees.width: Input should be a valid integer (got 'abc')"),
        ("trees.questions.n=-1", "trees.questions.n: Input should be greater than 0 (got -1)"),
        ("trees.judge=nosuch", "trees.judge: unknown judge 'nosuch' (built in: arithmetic, countdown;"),
        ("trees.reward=nosuch", "trees.reward: unknown reward 'nosuch'"),
        ("trees.widht=3", "trees.widht: unknown key 'widht'; did you mean 'width'? (valid keys: width, depth, beam,"),
        ("trees.reward={name: numeric, timeot: 2}", "trees.reward.timeot: reward 'numeric' has no option 'timeot'"),
        ("phase2.seeds=3", "phase2.seeds: expected a non-empty list of integers, e.g. [0, 1, 2] (got 3)"),
    ]:
        assert main(["show", recipe, override]) == 2
        assert f"error: command-line override '{override}': {message}" in capsys.readouterr().err
