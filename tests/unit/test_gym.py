"""task: reasoning_gym/<name>: records from reasoning-gym itself, scored by its own score_answer."""

import json

import pytest
import reasoning_gym

from posttrain.errors import RecipeError
from posttrain.recipe import load_recipe
from posttrain.rewards import REWARDS
from posttrain.tasks import generate, split_of


def test_records_come_from_reasoning_gym_with_its_knobs_and_disjoint_splits():
    train = generate("reasoning_gym/chain_sum", 200, "train", seed=0, min_terms=3, max_terms=3)
    heldout = generate("reasoning_gym/chain_sum", 30, "heldout", seed=0, min_terms=3, max_terms=3)
    questions = [r["prompt"][-1]["content"] for r in train]  # after reasoning-gym's system prompt
    assert len(set(questions)) == 200 and all(split_of(q) == "train" for q in questions)
    assert not set(questions) & {r["prompt"][-1]["content"] for r in heldout}
    truth = json.loads(train[0]["ground_truth"])
    assert truth["dataset"] == "chain_sum" and truth["entry"]["metadata"]["num_terms"] == 3
    assert train[0]["verifier"] == "reasoning_gym"
    assert train[0]["completion"][0]["content"] == f"<answer>{truth['entry']['answer']}</answer>"  # as it asks
    # the same seed gives the same records
    assert generate("reasoning_gym/chain_sum", 200, "train", seed=0, min_terms=3, max_terms=3) == train


@pytest.mark.parametrize("name,options", [("chain_sum", {}), ("countdown", {"min_numbers": 3, "max_numbers": 4}),
                                          ("word_sorting", {}), ("basic_arithmetic", {})])
def test_the_reward_is_reasoning_gyms_own_score(name, options):
    records = generate(f"reasoning_gym/{name}", 12, "train", seed=1, **options)
    entries = [json.loads(r["ground_truth"])["entry"] for r in records]
    dataset = reasoning_gym.create_dataset(name, seed=0, size=1, **options)
    answers = [e["answer"] for e in entries]
    wrong = [a[::-1] + " 1" for a in answers]
    completions = [f"Let me work it out.\nAnswer: {a}" for a in answers + wrong]
    truths = [r["ground_truth"] for r in records] * 2
    ours = REWARDS["reasoning_gym"](completions, truths)
    reference = [dataset.score_answer(a, e) for a, e in zip(answers + wrong, entries * 2)]
    assert ours == pytest.approx(reference)
    assert ours[:12] == [1.0] * 12  # the reference answers are right by reasoning-gym's own score
    # the verifier reward routes the records to it by their verifier column
    assert REWARDS["verifier"](completions, verifier=["reasoning_gym"] * 24, ground_truth=truths) == pytest.approx(reference)


def test_an_answer_that_makes_the_scorer_raise_scores_zero():
    record = generate("reasoning_gym/chain_sum", 1, "train", seed=2)[0]
    truth = json.loads(record["ground_truth"])
    truth["entry"] = {"question": "q"}  # no answer: chain_sum's score_answer raises KeyError
    assert REWARDS["reasoning_gym"](["Answer: 3"], [json.dumps(truth)]) == [0.0]


def test_a_recipe_names_an_unknown_dataset_or_option_with_its_key(tmp_path):
    base = ("method: sft\nmodel: {name_or_path: tiny}\n"
            "data: {train: [{task: reasoning_gym/%s, n: 8, options: %s}]}\ntrainer: {max_steps: 1}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(base % ("chain_sums", "{}"))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == "data.train.0.task" and "no dataset 'chain_sums'" in info.value.message
    assert "chain_sum" in info.value.message  # did you mean
    recipe.write_text(base % ("chain_sum", "{num_termz: 3}"))
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert info.value.key == "data.train.0.task" and "num_termz" in info.value.message
    recipe.write_text(base % ("chain_sum", "{min_terms: 3, max_terms: 3}"))
    assert load_recipe(recipe).stages[0].recipe.spec.data.train[0].task == "reasoning_gym/chain_sum"
