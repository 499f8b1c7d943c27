"""Countdown search trees (Stream of Search), the countdown step judge, journey traces of the
whole search, and per-segment loss masks."""

import json
import random

import pytest

from posttrain.data.trees import TraceOptions, build_traces, journey_lines, masked_spans, parse_tree
from posttrain.rewards import REWARDS
from posttrain.tasks import JUDGES, generate
from posttrain.tasks.countdown import countdown_search_tree, countdown_solvable, countdown_state

OPTIONS = {"count": 3, "max_number": 10, "max_target": 50, "use_all": True}
SEARCH = TraceOptions(journey="search", reflection="Wait, {critique}", backtrack="Let me go back.")


def brute_force(numbers, target):
    """Every value reachable with + - * / on positive integers, each number at most once."""
    from itertools import permutations

    reachable = set(numbers)
    for r in range(2, len(numbers) + 1):
        for chosen in permutations(numbers, r):
            values = {chosen[0]}
            for b in chosen[1:]:
                values = {v for a in values for v in (a + b, a * b, a - b, b - a, a // b if a % b == 0 else None,
                                                      b // a if b % a == 0 else None)
                          if v is not None and v > 0}
                reachable |= values
    return target in reachable


def test_the_search_reaches_the_target_and_rates_dead_ends_by_an_exhaustive_check():
    trees = generate("countdown_search_trees", 60, "train", seed=3, max_nodes=16, **OPTIONS)
    assert len(trees) == 60
    dead_ends = 0
    for tree in trees:
        record = {"ground_truth": tree["ground_truth"]}
        info = json.loads(tree["ground_truth"])
        parsed = parse_tree(tree)
        steps = {s["id"]: s for s in tree["steps"]}
        # the answer is right by the countdown verifier
        assert REWARDS["countdown"]([f"Answer: {tree['answer']}"], [tree["ground_truth"]]) == [1.0]
        for step in tree["steps"]:
            path, node = [], step
            while node["parent"] is not None:
                node = steps[node["parent"]]
                path.insert(0, node["text"])
            left = countdown_state(record, path + [step["text"]])
            assert step["text"].endswith(f"(left: {', '.join(map(str, left))})")
            if step["rating"] == "incorrect":
                dead_ends += 1
                assert not countdown_solvable(left, info["target"]) and step.get("critique")
        assert len(parsed.roots) >= 1
    assert dead_ends > 20  # the search does take wrong turns


def test_solvable_agrees_with_brute_force():
    rng = random.Random(0)
    for _ in range(300):
        numbers = [rng.randint(1, 10) for _ in range(3)]
        target = rng.randint(1, 60)
        # chains of the numbers in every order, each operand on either side: with 3 numbers,
        # every expression is such a chain
        assert countdown_solvable(numbers, target) == brute_force(numbers, target), (numbers, target)


def test_the_journey_is_the_search_in_order_and_the_shortcut_its_solution_path():
    record = {"prompt": [{"role": "user", "content": "Using the numbers [6, 2, 3], make 24."}], "completion": [],
              "ground_truth": json.dumps({"numbers": [6, 2, 3], "target": 24}), "verifier": "countdown"}
    tree = countdown_search_tree(record, random.Random(0), max_nodes=24)
    lines, dead = journey_lines(parse_tree(tree), random.Random(0), SEARCH)
    texts = [t for _, t in lines]
    assert texts[0] == "6 * 3 = 18 (left: 2, 18)"  # closest to 24 first
    assert texts[1:5] == ["18 + 2 = 20 (left: 20)", "18 - 2 = 16 (left: 16)", "18 * 2 = 36 (left: 36)",
                          "18 / 2 = 9 (left: 9)"]
    assert texts[5:7] == ["Wait, 2, 18 cannot make 24.", "Let me go back."]
    assert texts[-3:] == ["6 + 2 = 8 (left: 3, 8)", "8 * 3 = 24 (left: 24)", "Answer: (6 + 2) * 3"]
    assert [s for s, _ in lines][-3:] == ["step", "step", "answer"]
    assert dead == sum(s["rating"] == "incorrect" for s in tree["steps"])  # every dead end visited once
    shortcut, _ = build_traces([tree], "shortcut")
    assert shortcut[0]["completion"][0]["content"] == "6 + 2 = 8 (left: 3, 8)\n8 * 3 = 24 (left: 24)\nAnswer: (6 + 2) * 3"


def test_the_countdown_judge():
    judge = JUDGES["countdown"]
    record = {"ground_truth": json.dumps({"numbers": [6, 2, 3], "target": 24})}
    assert judge(record, [], "6 + 2 = 8 (left: 3, 8)") == ("correct", None)
    assert judge(record, [], "6 * 3 = 18") == ("incorrect", "2, 18 cannot make 24.")
    assert judge(record, [], "6 + 2 = 9") == ("incorrect", "6 + 2 is 8, not 9.")
    assert judge(record, [], "7 + 2 = 9") == ("incorrect", "7 is not among the numbers left (6, 2, 3).")
    assert judge(record, ["6 + 2 = 8"], "8 * 3 = 24") == ("correct", None)
    assert judge(record, ["6 + 2 = 8"], "6 * 3 = 18")[0] == "incorrect"  # 6 was used
    assert judge(record, [], "Answer: (6 + 2) * 3") is None


def test_masks_cover_exactly_the_named_segments():
    lines = [("wrong", "6 * 3 = 18"), ("reflection", "Wait, no."), ("backtrack", "Back."), ("step", "6 + 2 = 8"),
             ("answer", "Answer: 8")]
    text = "\n".join(t for _, t in lines)
    for mask, hidden in ((("wrong",), ["6 * 3 = 18\n"]), (("reflection", "backtrack"), ["Wait, no.\nBack.\n"]),
                         (("wrong", "reflection", "backtrack"), ["6 * 3 = 18\nWait, no.\nBack.\n"])):
        assert [text[a:b] for a, b in masked_spans(lines, mask)] == hidden


def test_masked_examples_tokenize_as_trl_and_hide_the_masked_tokens():
    """The tokens are the chat template's (what TRL's SFTTrainer trains on); the labels hide the
    prompt and the masked segments, and keep everything else of the completion."""
    from posttrain.recipe.schema import TinyModelSpec
    from posttrain.tiny import tiny_model_path
    from posttrain.trainers.sft import masked_examples
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(TinyModelSpec()))
    trees = generate("countdown_search_trees", 30, "train", seed=5, max_nodes=16, **OPTIONS)
    options = TraceOptions(journey="search", reflection="Wait, {critique}", backtrack="Let me go back.", mask=("wrong",))
    records, _ = build_traces(trees, "journey", 0, options)
    plain, _ = build_traces(trees, "journey", 0, TraceOptions(journey="search", reflection="Wait, {critique}",
                                                              backtrack="Let me go back."))
    for record, example, unmasked in zip(records, masked_examples(records, tokenizer), masked_examples(plain, tokenizer)):
        full = tokenizer.apply_chat_template(record["prompt"] + record["completion"], tokenize=True)
        full = full["input_ids"] if isinstance(full, dict) or hasattr(full, "keys") else full
        assert example["input_ids"] == list(full)
        prompt = tokenizer.apply_chat_template(record["prompt"], tokenize=True, add_generation_prompt=True)
        prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
        # unmasked: exactly TRL's completion mask (everything after the prompt)
        assert [x != -100 for x in unmasked["labels"]] == [False] * len(prompt) + [True] * (len(full) - len(prompt))
        kept = tokenizer.decode([t for t in example["labels"] if t != -100])
        content = record["completion"][0]["content"]
        visible = "".join(ch for i, ch in enumerate(content) if not any(a <= i < b for a, b in record["loss_mask"]))
        assert kept.replace("<|im_end|>", "").strip() == visible.strip()
        if record["loss_mask"]:
            assert "cannot make" in kept and sum(x != -100 for x in example["labels"]) < sum(
                x != -100 for x in unmasked["labels"])


@pytest.mark.parametrize("steps", [True])
def test_stepwise_countdown_solutions_are_right_and_in_the_trees_step_format(steps):
    records = generate("countdown", 40, "train", seed=0, steps=steps, **OPTIONS)
    for record in records:
        content = record["completion"][0]["content"]
        assert REWARDS["countdown"]([content], [record["ground_truth"]]) == [1.0]
        lines = content.split("\n")
        judge = JUDGES["countdown"]
        for i, line in enumerate(lines[:-1]):
            assert judge(record, lines[:i], line) == ("correct", None), (content, line)


def test_a_trees_file_with_a_bad_line_fails_before_phase_1_trains_naming_file_and_line(tmp_path, capsys):
    from posttrain.cli import main

    good = generate("countdown_search_trees", 2, "train", seed=3, max_nodes=16, **OPTIONS)
    unsolved = {**good[1], "steps": [{**s, "rating": "incorrect"} for s in good[1]["steps"]]}
    cases = {"broken.jsonl": (json.dumps(good[0]) + "\n{not json\n", ":2: not valid JSON"),
             "unsolved.jsonl": (json.dumps(good[0]) + "\n\n" + json.dumps(unsolved) + "\n",
                                ":3: not a solved reasoning tree")}
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        code = main(["run", "recipes/journey-countdown/experiment.yaml", f"trees.questions={{path: {path}}}",
                     f"run.dir={tmp_path / 'runs'}"])
        err = capsys.readouterr().err
        assert code == 2 and f"{path}{message}" in err and "Traceback" not in err
        assert not (tmp_path / "runs" / "journey-countdown" / "phase1" / "final").exists()  # nothing trained
