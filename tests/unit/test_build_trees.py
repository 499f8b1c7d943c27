"""Trees sampled from a model: step splitting, the arithmetic step checker, rating propagation,
and a real sampling run on the tiny model (structure, bounds, determinism)."""

import pytest

from posttrain.data.build_trees import Node, _has_correct_path, _propagate, split_step
from posttrain.tasks.arithmetic import arithmetic_judge
from posttrain.tasks import arithmetic

RECORD = {"prompt": [{"role": "user", "content": "Compute 66 - 20 + 90."}], "ground_truth": "136",
          "completion": [{"role": "assistant", "content": "66 - 20 = 46\n46 + 90 = 136\nAnswer: 136"}],
          "verifier": "numeric"}


def test_a_sampled_continuation_is_one_step_and_maybe_its_answer():
    assert split_step("66 - 20 = 46\n46 + 9") == ("66 - 20 = 46", None)
    assert split_step("46 + 90 = 136\nAnswer: 136") == ("46 + 90 = 136", "136")
    assert split_step("Answer: 137") == ("Answer: 137", "137")
    assert split_step("so \\boxed{7}\nmore") == ("so \\boxed{7}", "7")


def test_the_arithmetic_checker_names_the_mistake():
    assert arithmetic_judge(RECORD, [], "66 - 20 = 46") == ("correct", None)
    assert arithmetic_judge(RECORD, ["66 - 20 = 46"], "46 + 90 = 136") == ("correct", None)
    assert arithmetic_judge(RECORD, [], "66 - 20 = 56") == ("incorrect", "66 - 20 is 46, not 56.")
    assert arithmetic_judge(RECORD, [], "66 + 20 = 86")[1].startswith("the operation here is -, not +")
    assert arithmetic_judge(RECORD, [], "66 - 02 = 64")[1] == "the numbers are misread: it should be 66 - 20 = 46."
    assert arithmetic_judge(RECORD, ["66 - 20 = 56"], "56 + 90 = 146") == (
        "incorrect", "it continues from an earlier wrong step.")
    assert arithmetic_judge(RECORD, ["66 - 20 = 46", "46 + 90 = 136"], "Answer: 136") is None  # the verifier's


def test_answers_propagate_up_to_unrated_steps():
    nodes = {n.id: n for n in [
        Node("a", None, "first", 1), Node("b", None, "other first", 1),
        Node("c", "a", "second", 2, answer="136"),                      # reached the answer
        Node("d", "b", "dead end", 2, rating="incorrect", critique="x", answer="5"),
        Node("e", "b", "unfinished", 2)]}
    _propagate(nodes, "136")
    assert [nodes[k].rating for k in "abcde"] == ["correct", "incorrect", "correct", "incorrect", "incorrect"]
    assert nodes["b"].critique == "no continuation from this step reached the answer 136."
    assert _has_correct_path(nodes)
    nodes["c"].rating = "incorrect"
    assert not _has_correct_path(nodes)


@pytest.mark.e2e
def test_sampling_from_the_tiny_model_respects_width_depth_and_beam_and_is_seeded():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.data.build_trees import build_trees
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    path = tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    records = arithmetic(4, split="heldout")
    width, depth, beam = 3, 3, 2
    first, stats = build_trees(model, tokenizer, records, width=width, depth=depth, beam=beam, step_tokens=12,
                               judge="arithmetic", seed=1)
    again, _ = build_trees(model, tokenizer, records, width=width, depth=depth, beam=beam, step_tokens=12,
                           judge="arithmetic", seed=1)
    assert first == again
    # An untrained model writes no correct solution: every tree is dropped, and counted.
    assert stats["questions"] == 4 and stats["trees"] == 0 and stats["dropped: no correct path"] == 4
    most = len(records) * (width + (depth - 1) * beam * width)
    assert 0 < stats["sampled steps"] <= most


def test_the_worked_solution_can_be_grafted_in_as_a_correct_path():
    from posttrain.data.build_trees import _add_gold_path

    nodes = {n.id: n for n in [Node("s0", None, "66 - 20 = 46", 1),           # the model's own, identical
                               Node("s1", None, "66 - 20 = 56", 1, rating="incorrect", critique="slip"),
                               Node("s2", "s0", "46 + 90 = 137", 2, answer="137", rating="incorrect")]}
    assert _add_gold_path(nodes, RECORD) == 1  # only "46 + 90 = 136": the model's "66 - 20 = 46" is reused
    _propagate(nodes, "136")
    assert nodes["s0"].rating == "correct" and _has_correct_path(nodes)
    gold = [n for n in nodes.values() if n.text == "46 + 90 = 136"]
    assert len(gold) == 1 and gold[0].parent == "s0" and gold[0].answer == "136"
