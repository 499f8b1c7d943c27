"""Real data parallelism on CPU: 2 processes over gloo, started by `posttrain launch`, under DDP
(torchrun), DeepSpeed ZeRO-2 and ZeRO-3 (accelerate with the shipped configs), for SFT, DPO and
GRPO.

- SFT and DPO: 2 ranks with per-device batch b train like 1 rank with 2b: the same loss at
  every step (relative 1e-4) and the same final weights: per tensor, the two runs' weights differ
  by under 1 % of how far training moved them (measured: up to 0.13 %, from float summation
  order, which Adam's normalised steps amplify where gradients are near zero). DPO's reference model is
  loaded by TRL itself, which under ZeRO-3 needs the process group first (common.init_distributed).
- GRPO: each rank samples its own completions, so 2 ranks do not draw the same samples as 1 rank
  and losses are not comparable; the runs must train (every parameter changes), log rewards, and
  reach the same weights on both ranks (one final model is written, by rank 0).
- Only rank 0 writes the run directory and W&B.
- A ZeRO-3 checkpoint consolidates into a normal Hugging Face model (tied embeddings included).
"""

import json
import math
from pathlib import Path

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.distributed

TINY = "{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}"
DATA = {
    "sft": "- {task: arithmetic, n: 64}",
    "dpo": "- {task: arithmetic_pairs, n: 64}",
    "rlvr": "- {task: arithmetic, n: 64}",
}
TRAINER = {
    "sft": "{max_steps: 3, learning_rate: 1.0e-3, logging_steps: 1, save_steps: 3, seed: 0}",
    "dpo": "{max_steps: 3, learning_rate: 1.0e-3, logging_steps: 1, save_steps: 3, seed: 0, max_length: 128}",
    "rlvr": ("{max_steps: 2, learning_rate: 1.0e-3, logging_steps: 1, save_steps: 2, seed: 0, num_generations: 4, "
             "max_completion_length: 8, beta: 0.04}"),
}
RECIPE = """\
method: {method}
model: {{name_or_path: tiny, tiny: {tiny}}}
data:
  train:
    {data}
{rewards}batch: {{per_device: {per_device}, global: 8}}
trainer: {trainer}
tracking: {{wandb: {{project: posttrain-tests, mode: offline}}}}
launch: {launch}
run: {{name: {name}, dir: {dir}}}
"""
LAUNCH = {"single": "{}", "ddp": "{gpus_per_node: 2}", "zero2": "{gpus_per_node: 2, zero: 2}",
          "zero3": "{gpus_per_node: 2, zero: 3}",
          # one's own DeepSpeed JSON (open-instruct's launch), with HF's "auto" values
          "own-zero2": "{gpus_per_node: 2, deepspeed_config: ds_zero2.json}"}
OWN_DEEPSPEED = {"zero_optimization": {"stage": 2, "overlap_comm": False, "contiguous_gradients": True},
                 "bf16": {"enabled": "auto"}, "gradient_accumulation_steps": "auto",
                 "train_micro_batch_size_per_gpu": "auto", "train_batch_size": "auto", "gradient_clipping": "auto"}


def launch(tmp: Path, method: str, mode: str) -> Path:
    name = f"{method}-{mode}"
    run = tmp / name
    if (run / "final" / "config.json").is_file():
        return run
    processes = 1 if mode == "single" else 2
    recipe = tmp / f"{name}.yaml"
    recipe.write_text(RECIPE.format(
        method=method, tiny=TINY, data=DATA[method], trainer=TRAINER[method], launch=LAUNCH[mode], name=name,
        dir=tmp, per_device=8 // processes,
        rewards=("rewards: [{name: numeric}, {name: 'distributed_rewards:digit_share', weight: 0.5}]\n"
                 if method == "rlvr" else "")))
    assert main(["launch", str(recipe)]) == 0
    return run


REWARD_MODULE = """\
import re


def constant_for_even_first_numbers(completions, prompts, **columns):
    out = []
    for completion, prompt in zip(completions, prompts):
        first = int(re.search(r"\\d+", prompt[-1]["content"]).group())
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        out.append(0.5 if first % 2 == 0 else sum(ch.isdigit() for ch in text) / max(1, len(text)))
    return out


def digit_share(completions, **columns):
    # differs between samples even for an untrained model, so GRPO's advantages are not all 0
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import os
    import sys

    tmp = tmp_path_factory.mktemp("distributed")
    (tmp / "ds_zero2.json").write_text(json.dumps(OWN_DEEPSPEED))
    (tmp / "distributed_rewards.py").write_text(REWARD_MODULE)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp), saved]))  # the launched ranks
    sys.path.insert(0, str(tmp))  # validation in this process
    yield tmp
    sys.path.remove(str(tmp))
    if saved is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = saved


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def losses(run: Path) -> dict[int, float]:
    return {m["step"]: m["loss"] for m in metrics(run) if "loss" in m}


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def start_weights() -> dict:
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    return weights(tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)))


def same_training(a: dict, b: dict, tolerance: float = 1e-2) -> None:
    start = start_weights()
    assert sorted(a) == sorted(b)
    for key in a:
        moved = (a[key] - start[key]).norm()
        assert moved > 0, key
        assert (a[key] - b[key]).norm() / moved < tolerance, key


def rank_zero_only_wrote(run: Path, world: int, steps: int) -> None:
    resolved = (run / "recipe.resolved.yaml").read_text()
    assert f"world_size: {world}" in resolved
    assert sorted(losses(run)) == list(range(1, steps + 1))  # one line per step: only rank 0 logs
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # one W&B run, rank 0's


@pytest.mark.parametrize("method,mode", [(m, z) for m in ("sft", "dpo") for z in ("ddp", "zero2", "zero3")]
                         + [("sft", "own-zero2")])
def test_two_ranks_train_like_one_rank_with_twice_the_batch(runs, method, mode):
    single = launch(runs, method, "single")
    run = launch(runs, method, mode)
    rank_zero_only_wrote(run, 2, 3)
    assert "gradient_accumulation_steps: 1" in (run / "recipe.resolved.yaml").read_text()
    if "zero" in mode:  # DeepSpeed trained it: its checkpoints hold ZeRO shards and a `latest` tag
        assert list(run.glob("checkpoints/checkpoint-*/latest"))
    expected = losses(single)
    for step, loss in losses(run).items():
        assert loss == pytest.approx(expected[step], rel=1e-4), (step, loss, expected[step])
    if method == "dpo":
        assert all("rewards/margins" in m for m in metrics(run) if "loss" in m)
    same_training(weights(single / "final"), weights(run / "final"))


@pytest.mark.parametrize("mode", ["ddp", "zero2", "zero3"])
def test_grpo_trains_on_two_ranks(runs, mode):
    run = launch(runs, "rlvr", mode)
    rank_zero_only_wrote(run, 2, 2)
    for m in metrics(run):
        if "loss" in m:
            assert math.isfinite(m["loss"]) and "rewards/numeric/mean" in m and "frac_reward_zero_std" in m
            assert "kl" in m  # beta > 0: the reference model ran (TRL loads it itself under ZeRO-3)
    start, end = start_weights(), weights(run / "final")
    assert [k for k in start if (start[k] == end[k]).all()] == []  # every parameter trained


def test_a_zero3_checkpoint_consolidates_into_a_normal_model(runs, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    run = launch(runs, "sft", "zero3")
    checkpoint = run / "checkpoints" / "checkpoint-3"
    assert list(checkpoint.glob("global_step3/*optim_states.pt"))  # DeepSpeed's sharded states
    out = tmp_path / "consolidated"
    assert main(["consolidate", str(checkpoint), str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    consolidated = weights(out)
    gathered = weights(run / "final")  # the 16-bit gather at save time (fp32 on CPU)
    assert sorted(consolidated) == sorted(gathered)
    for key in gathered:
        assert torch.equal(consolidated[key], gathered[key]), key
    same_training(weights(launch(runs, "sft", "single") / "final"), consolidated)


def test_dynamic_sampling_on_two_ranks_takes_the_same_rounds_everywhere(runs):
    """Each rank replaces its own zero-variance groups; generation has collective ops inside, so
    the ranks must agree on the number of extra rounds (a mismatch would hang, not fail)."""
    recipe = runs / "dapo-ddp.yaml"
    recipe.write_text(RECIPE.format(
        method="rlvr", tiny=TINY, data=DATA["rlvr"], trainer=TRAINER["rlvr"].replace("beta: 0.04", "beta: 0.0"),
        launch=LAUNCH["ddp"], name="dapo-ddp", dir=runs, per_device=4,
        rewards="rewards: [{name: 'distributed_rewards:constant_for_even_first_numbers'}]\n")
        + "dynamic_sampling: {max_retries: 4}\n")
    assert main(["launch", str(recipe)]) == 0
    steps = [m for m in metrics(runs / "dapo-ddp") if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        before, after = m["dynamic_sampling/zero_std_groups_before"], m["dynamic_sampling/zero_std_groups_after"]
        assert after <= before and (before == 0 or m["dynamic_sampling/extra_rounds"] >= 1)
    assert any(m["dynamic_sampling/zero_std_groups_before"] > m["dynamic_sampling/zero_std_groups_after"]
               for m in steps)


def test_a_model_reward_beside_a_zero3_policy_on_two_ranks(runs):
    """GRPO under ZeRO-3 with a process reward model as one of its rewards: the PRM loads whole
    on each rank (outside zero.Init and the engine) while the policy stays sharded, and training
    logs the PRM's reward beside numeric."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    base = tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128))
    prm = runs / "tiny-prm"
    if not (prm / "config.json").is_file():
        AutoModelForTokenClassification.from_pretrained(base, num_labels=2).save_pretrained(prm)
        AutoTokenizer.from_pretrained(base).save_pretrained(prm)
    name = "rlvr-zero3-prm"
    recipe = runs / f"{name}.yaml"
    recipe.write_text(RECIPE.format(
        method="rlvr", tiny=TINY, data=DATA["rlvr"], trainer=TRAINER["rlvr"], launch=LAUNCH["zero3"], name=name,
        dir=runs, per_device=4,
        rewards=f"rewards: [{{name: numeric}}, {{name: reward_model, path: {prm}, aggregate: mean, device: cpu, weight: 0.5}}]\n"))
    assert main(["launch", str(recipe)]) == 0
    run = runs / name
    rank_zero_only_wrote(run, 2, 2)
    logged = [m for m in metrics(run) if "loss" in m]
    assert logged and all(math.isfinite(m["loss"]) for m in logged)
    scores = [m["rewards/reward_model/mean"] for m in logged]
    assert all(0.0 < s < 1.0 for s in scores)  # a PRM's mean step rating: real scores, not empty weights
