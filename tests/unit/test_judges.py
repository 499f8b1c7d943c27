"""Models as judges (issue 14, points 3, 4, 7): an LLM judge's unparsable replies are counted and
never pass (the untrained tiny model is a judge that never answers in the format, which is the
case that matters); a PRM as the step judge of build-trees rates by its own step scores; judge
and test-time settings are checked when the recipe loads."""

import pytest

from posttrain.cli import main
from posttrain.recipe import TinyModelSpec
from posttrain.rewards.llm_judge import (JUDGE_COUNTS, PAIR_PATTERN, SCORE_PATTERN, STEP_PATTERN, LLMStepJudge,
                                         judge_pairs, llm_judge_reward, pair_report, parse_choice, parse_score)
from posttrain.rewards.model_reward import PRMStepJudge, encode
from posttrain.tasks import generate, resolve_judge

SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)


@pytest.fixture(scope="module")
def lm():
    from posttrain.tiny import tiny_model_path

    return str(tiny_model_path(SPEC))


@pytest.fixture(scope="module")
def prm(tmp_path_factory, lm):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lm)
    model = AutoModelForTokenClassification.from_pretrained(lm, num_labels=2)
    model.config.pad_token_id = tokenizer.pad_token_id
    path = tmp_path_factory.mktemp("prm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), model.eval(), tokenizer


@pytest.mark.parametrize("reply, score", [("Score: 8", 0.8), ("score = 3", None), ("Score: 10.0", 1.0), ("Score: -1", None),
                                          ("Score: 12", None), ("", None), ("The answer deserves Score:0", 0.0)])
def test_a_score_is_read_only_from_the_asked_format(reply, score):
    assert parse_score(reply, SCORE_PATTERN, 10.0) == score


def test_verdicts_and_pair_choices_parse_or_are_none():
    assert parse_choice("Verdict: correct", STEP_PATTERN, ("correct", "incorrect")) == "correct"
    assert parse_choice("correct!", STEP_PATTERN, ("correct", "incorrect")) is None
    assert parse_choice("Better: Both", PAIR_PATTERN, ("a", "b")) is None
    assert parse_choice("better: a", PAIR_PATTERN, ("a", "b")) == "a"


def test_an_unparsable_judgement_scores_zero_and_is_counted(lm, capsys):
    JUDGE_COUNTS.clear()  # the count is printed when the first judgement fails to parse
    before = JUDGE_COUNTS[("score", "unparsed")], JUDGE_COUNTS[("score", "judged")]
    prompts = [[{"role": "user", "content": "Compute 2 + 2."}]] * 3
    scores = llm_judge_reward(["Answer: 4", "Answer: 5", ""], path=lm, prompts=prompts, ground_truth=["4"] * 3,
                              max_new_tokens=8, device="cpu")
    unparsed = JUDGE_COUNTS[("score", "unparsed")] - before[0]
    assert JUDGE_COUNTS[("score", "judged")] - before[1] == 3
    # the untrained model's replies are noise: none gives a score in the format, so none passes
    assert unparsed == 3 and scores == [0.0, 0.0, 0.0]
    assert "did not parse" in capsys.readouterr().out


def test_pairwise_judging_asks_both_orders_and_counts_what_does_not_parse(lm):
    pairs = [{"prompt": [{"role": "user", "content": "Compute 1 + 1."}], "chosen": "Answer: 2", "rejected": "Answer: 3"}] * 2
    report = judge_pairs(lm, pairs, max_new_tokens=8, device="cpu")
    assert report["judgements"] == 4 and report["unparsed"] == 4
    assert report["accuracy_both_orders"] == 0.0 and report["first_position_rate"] is None
    # a judge that always says A: right in one order only, every verdict decided by position
    biased = pair_report(["a", "a", "a"], ["a", "a", "a"])
    assert biased["accuracy_chosen_first"] == 1.0 and biased["accuracy_chosen_second"] == 0.0
    assert biased["accuracy_both_orders"] == 0.0 and biased["position_decided"] == 3 and biased["first_position_rate"] == 1.0


def test_an_llm_step_judge_that_cannot_tell_leaves_the_step_to_the_tree(lm):
    judge = LLMStepJudge(path=lm, max_new_tokens=8, device="cpu")
    record = generate("arithmetic", 1, "heldout", 0)[0]
    before = JUDGE_COUNTS[("step", "unparsed")]
    assert judge.rate_many([(record, [], "4 + 31 = 35"), (record, ["4 + 31 = 35"], "Answer: 35")]) == [None, None]
    assert JUDGE_COUNTS[("step", "unparsed")] - before == 2
    with pytest.raises(ValueError, match="no {step}"):
        LLMStepJudge(path=lm, template="{question} {previous}")


def test_a_prm_step_judge_rates_by_the_prm_score_of_the_step_after_the_steps_before_it(prm):
    import torch

    path, model, tokenizer = prm
    record = generate("arithmetic", 1, "heldout", 0)[0]
    previous, step = ["17 + 35 = 52"], "52 + 14 = 66"
    ids, positions = encode(tokenizer, record["prompt"], [*previous, step])
    with torch.no_grad():
        p = float(model(input_ids=torch.tensor([ids])).logits[0, positions[-1]].softmax(-1)[1])
    below, above = PRMStepJudge(path=path, threshold=max(0.01, p - 0.01)), PRMStepJudge(path=path, threshold=min(0.99, p + 0.01))
    assert below(record, previous, step) == ("correct", None)
    rating, critique = above(record, previous, step)
    assert rating == "incorrect" and f"{p:.2f}" in critique
    # batched as build-trees calls it: the same verdicts one by one
    items = [(record, [], "17 + 35 = 52"), (record, previous, step), (record, previous, "52 + 14 = 67")]
    assert above.rate_many(items) == [above(*item) for item in items]


def test_build_trees_takes_a_prm_as_its_judge(prm, lm):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.data.build_trees import build_trees

    path, _, _ = prm
    judge = resolve_judge({"name": "reward_model", "path": path, "threshold": 0.5})
    records = generate("arithmetic", 3, "train", 0)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(lm), AutoTokenizer.from_pretrained(lm)
    trees, stats = build_trees(model, tokenizer, records, width=2, depth=2, beam=1, step_tokens=8, judge=judge,
                               include_gold=True, reward="numeric")
    rated = [s for t in trees for s in t["steps"] if s.get("critique", "").startswith("the process reward model")]
    assert stats["trees"] == 3 and all(s["rating"] == "incorrect" for s in rated)


@pytest.mark.parametrize("judge, message", [
    ({"name": "nope", "path": "x"}, "unknown model judge 'nope'"),
    ({"name": "reward_model"}, "missing 1 required keyword-only argument: 'path'"),
    ({"name": "reward_model", "path": "x", "threshold": 2}, "threshold is 2"),
    ({"name": "llm_judge", "path": "x", "colour": "red"}, "unexpected keyword argument 'colour'"),
])
def test_a_wrong_judge_is_named(judge, message):
    with pytest.raises(LookupError, match=message):
        resolve_judge(judge)


PRM_RECIPE = """\
method: prm
model: {{name_or_path: tiny}}
data:
  train:
    - {{task: arithmetic, n: 10, {source}}}
{extra}
"""


@pytest.mark.parametrize("source, extra, message", [
    ("build_trees: {width: 2}", "", "stages sampled trees|sampled trees become training records through traces"),
    ("build_trees: {judge: {name: reward_model}}, traces: {kind: steps}", "",
     "data.train.0.build_trees.judge: judge 'reward_model'"),
    ("traces: {kind: steps}, build_trees: {}", "eval: {data: [{task: arithmetic}]}", "its eval block can only give test_time"),
    ("traces: {kind: steps}, build_trees: {}", "eval: {data: [{task: arithmetic}], baseline: true, test_time: {}}",
     "eval.baseline: method prm: there is no before and after"),
    ("traces: {kind: steps}, build_trees: {}", "eval: {data: [{task: arithmetic}], test_time: {budgets: [4, 2]}}",
     "budgets must be increasing"),
    ("traces: {kind: steps}, build_trees: {}",
     "eval: {data: [{task: arithmetic}], test_time: {strategies: [lookahead], lookahead: 0}}", "give lookahead >= 1"),
])
def test_prm_sources_and_test_time_settings_are_checked_at_load(write_recipe, capsys, source, extra, message):
    import re

    path = write_recipe(PRM_RECIPE.format(source=source, extra=extra))
    assert main(["validate", str(path)]) == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("test_time, message", [
    ("{strategies: [majority, beam_search]}", "eval.test_time.prm: beam_search need a process reward model"),
    ("{strategies: [best_of_n]}", "eval.test_time.verifier: best_of_n need a verifier"),
    ("{strategies: [best_of_n], verifier: {name: llm_judge, path: x, pattern: 'no group'}}",
     "reward 'llm_judge': pattern 'no group' has no group"),
])
def test_a_generating_run_names_the_models_its_strategies_need(write_recipe, capsys, test_time, message):
    path = write_recipe(f"method: sft\nmodel: {{name_or_path: tiny}}\ndata: {{train: [{{task: arithmetic}}]}}\n"
                        f"eval: {{data: [{{task: arithmetic, split: heldout}}], test_time: {test_time}}}\n")
    assert main(["validate", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_build_trees_sources_belong_to_the_prm_trainer(write_recipe, capsys):
    path = write_recipe("method: sft\nmodel: {name_or_path: tiny}\n"
                        "data: {train: [{task: arithmetic, build_trees: {}, traces: {kind: shortcut}}]}\n")
    assert main(["validate", str(path)]) == 2
    assert "trees are sampled from the starting model by method: prm only" in capsys.readouterr().err
