"""GRPO's rollouts through posttrain's loop (trainers/rollouts.py) against TRL's own generation
in the same trainer: greedy completions token for token (grouped prompts, as TRL's sampler
batches them, and a batch of distinct prompts), sampled first tokens from the same distribution
as TRL's (both checked against the softmax of the warped logits), and the fall-back to TRL's
path for settings the loop does not apply."""

import pytest
import torch

from posttrain.recipe.schema import TinyModelSpec

SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
TEXTS = ["Compute 3 + 4.", "Compute 12 - 5 + 100 - 7.", "Hi", "What is 2 + 2? Think.", "x"]


def _trainer(noisy_tiny, tmp_path, **generation):
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.trainers.rollouts import engine_rollouts

    model, tokenizer = noisy_tiny(SPEC)
    data = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": t}]} for t in TEXTS])
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, report_to=[], bf16=False, use_cpu=True,
                      max_completion_length=generation.pop("max_completion_length", 24), **generation)
    trainer = engine_rollouts(GRPOTrainer)(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                                           args=args, train_dataset=data, processing_class=tokenizer)
    return trainer, tokenizer


def _ids(tokenizer, texts):
    return [tokenizer.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                          tokenize=True, return_dict=True)["input_ids"] for t in texts]


def test_greedy_rollouts_equal_trls_token_for_token(noisy_tiny, tmp_path, capsys):
    from trl import GRPOTrainer

    trainer, tokenizer = _trainer(noisy_tiny, tmp_path, generation_kwargs={"do_sample": False})
    eos = set(trainer.eos_token_ids)
    grouped = [ids for ids in _ids(tokenizer, TEXTS) for _ in range(4)]  # as TRL's RepeatSampler batches them
    distinct = _ids(tokenizer, TEXTS)
    for prompts in (grouped, distinct):
        ours, none = trainer._generate_single_turn(prompts, None, {}, 4)
        theirs, _ = GRPOTrainer._generate_single_turn(trainer, prompts, None, {}, 4)
        assert none is None and ours == theirs
        assert len({tuple(c) for c in ours}) > 1  # the rows write different things
        assert all(c[-1] in eos or len(c) == 24 for c in ours)  # up to an end token, or cut at the length
    assert "TRL's own generation" not in capsys.readouterr().out  # posttrain's loop ran


@pytest.mark.parametrize("settings", [{"temperature": 1.0}, {"temperature": 0.7, "top_p": 0.9, "top_k": 20}])
def test_sampled_rollouts_follow_trls_distribution(noisy_tiny, tmp_path, capsys, settings):
    """The first token, 3,000 times from one prompt, from our path and from TRL's: each within
    4.5 standard errors of the softmax of the logits after TRL's warpers."""
    from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    from trl import GRPOTrainer

    trainer, tokenizer = _trainer(noisy_tiny, tmp_path, max_completion_length=1, **settings)
    prompt = _ids(tokenizer, TEXTS[1:2])[0]
    with torch.no_grad():
        logits = trainer.model(torch.tensor([prompt])).logits[:, -1, :].float()
    scores = TemperatureLogitsWarper(settings["temperature"])(None, logits) if settings["temperature"] != 1.0 else logits
    if settings.get("top_k"):
        scores = TopKLogitsWarper(settings["top_k"])(None, scores)
    if settings.get("top_p", 1.0) < 1.0:
        scores = TopPLogitsWarper(settings["top_p"])(None, scores)
    expected = torch.softmax(scores, dim=-1)[0]
    n = 3000
    torch.manual_seed(0)
    ours, _ = trainer._generate_single_turn([prompt] * n, None, {}, n)
    theirs, _ = GRPOTrainer._generate_single_turn(trainer, [prompt] * n, None, {}, n)
    for draw in (ours, theirs):
        counts = torch.zeros_like(expected)
        for completion in draw:
            counts[completion[0]] += 1
        assert counts[expected == 0].sum() == 0
        likely = expected > 0.01
        error = (expected * (1 - expected) / n).sqrt()
        assert ((counts / n - expected).abs()[likely] <= 4.5 * error[likely] + 1e-9).all()
    assert "TRL's own generation" not in capsys.readouterr().out


def test_settings_the_loop_does_not_apply_take_trls_path(noisy_tiny, tmp_path, capsys):
    trainer, tokenizer = _trainer(noisy_tiny, tmp_path, repetition_penalty=1.3, generation_kwargs={"do_sample": False})
    prompts = _ids(tokenizer, TEXTS[:2])
    from trl import GRPOTrainer

    assert trainer._generate_single_turn(prompts, None, {}, 1) == GRPOTrainer._generate_single_turn(
        trainer, prompts, None, {}, 1)
    assert "rollouts through TRL's own generation: generation settings the loop does not apply: " \
           "repetition_penalty" in capsys.readouterr().out


def test_runs_of_identical_prompts_are_grouped():
    from posttrain.trainers.rollouts import groups

    assert groups([[1], [1], [2], [2]]) == 2
    assert groups([[1], [1], [2]]) == 1
    assert groups([[1], [2], [1]]) == 1
    assert groups([]) == 1
