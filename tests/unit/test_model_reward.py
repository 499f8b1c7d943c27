"""`reward_model`: a trained reward model or process reward model as a reward (issue 14): each
shape's score against the model's own outputs read by hand, the four aggregations over steps,
batching that changes nothing, and the recipe errors."""

import math

import pytest

from posttrain.recipe import TinyModelSpec
from posttrain.rewards import REWARDS
from posttrain.rewards.model_reward import AGGREGATES, aggregate_scores, encode, load_verifier_model

SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
PROMPTS = [[{"role": "user", "content": "Compute 66 - 20 + 90."}], [{"role": "user", "content": "Compute 1 + 2."}],
           [{"role": "user", "content": "Compute 5 - 7."}]]
COMPLETIONS = ["66 - 20 = 46\n46 + 90 = 136\nAnswer: 136", "1 + 2 = 4\nAnswer: 4", ""]


def _save(tmp_path, auto, **kwargs):
    from transformers import AutoTokenizer

    from posttrain.tiny import tiny_model_path

    base = tiny_model_path(SPEC)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = auto.from_pretrained(base, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    path = tmp_path / auto.__name__
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path), model.eval(), tokenizer


@pytest.fixture(scope="module")
def prm(tmp_path_factory):
    from transformers import AutoModelForTokenClassification

    return _save(tmp_path_factory.mktemp("prm"), AutoModelForTokenClassification, num_labels=2)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification

    return _save(tmp_path_factory.mktemp("rm"), AutoModelForSequenceClassification, num_labels=1)


def _by_hand(model, tokenizer, prompt, completion):
    """The step ratings, one completion at a time, read at each separator."""
    import torch

    steps = [s for s in completion.split("\n") if s.strip()]
    ids, positions = encode(tokenizer, prompt, steps)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    return [float(logits[p].softmax(-1)[1]) for p in positions]


@pytest.mark.parametrize("how", AGGREGATES)
def test_a_process_reward_model_scores_the_aggregate_of_its_step_ratings(prm, how):
    path, model, tokenizer = prm
    scores = REWARDS["reward_model"](COMPLETIONS, prompts=PROMPTS, path=path, aggregate=how, device="cpu")
    for score, prompt, completion in zip(scores, PROMPTS, COMPLETIONS):
        steps = _by_hand(model, tokenizer, prompt, completion)
        assert score == pytest.approx(aggregate_scores(steps, how), abs=1e-5)
        assert 0.0 <= score <= 1.0
    assert scores[2] == 0.0  # no step: scores 0, never raises
    ratings = _by_hand(model, tokenizer, PROMPTS[0], COMPLETIONS[0])
    assert len(ratings) == 3
    expected = {"min": min(ratings), "last": ratings[-1], "product": math.prod(ratings), "mean": sum(ratings) / 3}
    assert scores[0] == pytest.approx(expected[how], abs=1e-5)


def test_batching_changes_no_score(prm, outcome):
    for path, _, _ in (prm, outcome):
        one = REWARDS["reward_model"](COMPLETIONS * 3, prompts=PROMPTS * 3, path=path, batch_size=1, device="cpu")
        many = REWARDS["reward_model"](COMPLETIONS * 3, prompts=PROMPTS * 3, path=path, batch_size=16, device="cpu")
        assert one == pytest.approx(many, abs=1e-5)


def test_a_reward_model_scores_prompt_and_completion_with_its_one_output(outcome):
    import torch

    path, model, tokenizer = outcome
    messages = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]  # TRL's chat completions
    scores = REWARDS["reward_model"](messages, prompts=PROMPTS, path=path, device="cpu")
    for score, prompt, completion in zip(scores, PROMPTS, messages):
        text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
        with torch.no_grad():
            expected = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0]
        assert score == pytest.approx(float(expected), abs=1e-5)


def test_a_model_that_is_not_a_reward_model_is_refused(tmp_path):
    from transformers import AutoModelForCausalLM

    from posttrain.errors import UserError

    path, _, _ = _save(tmp_path, AutoModelForCausalLM)
    with pytest.raises(UserError, match="a reward model is a sequence classifier with one output"):
        load_verifier_model(path, "cpu")
    with pytest.raises(UserError, match="cannot load a model from"):
        load_verifier_model(str(tmp_path / "missing"), "cpu")


@pytest.mark.parametrize("block,message", [
    ("{name: reward_model}", "needs the option 'path'"),
    ("{name: reward_model, path: m, aggregate: median}", "aggregate is 'median'; one of min, last, product, mean"),
    ("{name: overlong_penalty, max_length: 20}", "needs the option 'cache'"),
])
def test_reward_options_are_checked_when_the_recipe_loads(tmp_path, block, message):
    from posttrain.errors import UserError
    from posttrain.recipe import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: rlvr\nmodel: {name_or_path: tiny}\ndata: {train: [{task: arithmetic, n: 8}]}\n"
                      f"rewards: [{block}]\nbatch: {{per_device: 8}}\ntrainer: {{num_generations: 4}}\n")
    with pytest.raises(UserError, match=message):
        load_recipe(recipe)


def test_a_model_reward_loads_whole_while_a_zero3_run_is_set_up(prm):
    """Under ZeRO-3 transformers builds every model partitioned (deepspeed.zero.Init) while its
    global DeepSpeed config says stage 3; a reward model scored outside the engine must not be."""
    from transformers.integrations import is_deepspeed_zero3_enabled
    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    path, model, _ = prm
    config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 1})
    try:
        assert is_deepspeed_zero3_enabled()
        load_verifier_model.cache_clear()
        loaded, _, kind, _ = load_verifier_model(path, "cpu")
        assert is_deepspeed_zero3_enabled()  # the run's setting is back
        assert kind == "process" and not any(hasattr(p, "ds_id") for p in loaded.parameters())
        assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())
    finally:
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
        del config
        load_verifier_model.cache_clear()
