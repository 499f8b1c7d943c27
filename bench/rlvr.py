"""posttrain's GRPO step against a plain TRL GRPOTrainer, and where a GRPO step's time goes.

    python bench/rlvr.py                 # ~3 minutes on 2 CPU cores
    python bench/rlvr.py --rounds 6

Part 1 builds posttrain's RLVR trainer (from a recipe, through `trainers.skeleton.build_trainer`: the reward
registry's guarded `numeric` reward, metrics callback) and a plain GRPOTrainer with the same tiny
model, data and settings and the bare reward function, alternates them in rounds in one process,
and prints the ratio of median step times (goal: <= 1.03).

Part 2 splits posttrain's step time into generation (`_generate`), reward (`_calculate_rewards`)
and the rest (log-probabilities, loss, backward, optimizer: "update"), by timing those methods on
the trainer instance. Only ratios and shares from one run are meaningful; absolute times are not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import PrinterCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from sft_overhead import StepClock  # noqa: E402

hf_logging.set_verbosity_error()

SETTINGS = dict(max_steps=10, learning_rate=1e-5, num_generations=8, max_completion_length=32, temperature=1.0,
                beta=0.0, logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0)
PER_DEVICE = 16  # completions: 2 prompts x 8 generations

RECIPE = """\
method: rlvr
model: {{name_or_path: tiny}}
data:
  train:
    - {{task: arithmetic, n: {n}, seed: 0}}
rewards: [{{name: numeric}}]
batch: {{per_device: {per_device}, global: {per_device}}}
trainer: {trainer}
run: {{name: bench, dir: {dir}}}
"""


def posttrain_trainer(workdir: Path, n: int, steps: int):
    import json

    from posttrain.recipe import Device, load_run
    from posttrain.rundir import RunDir, prepare
    from posttrain.trainers.skeleton import build_trainer

    trainer = json.dumps({**SETTINGS, "max_steps": steps})
    recipe = workdir / "bench.yaml"
    recipe.write_text(RECIPE.format(n=n, per_device=PER_DEVICE, trainer=trainer, dir=workdir / "runs"))
    loaded = load_run(recipe)
    run = RunDir(loaded.run_dir)
    prepare(run, resume=False, overwrite=True)
    return build_trainer(loaded, run, None, Device.detect())


def plain_trl_trainer(workdir: Path, n: int, steps: int):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.tasks import arithmetic
    from posttrain.recipe import TinyModelSpec
    from posttrain.rewards.numeric import numeric_reward
    from posttrain.tiny import tiny_model_path

    path = str(tiny_model_path(TinyModelSpec()))
    records = [{k: v for k, v in r.items() if k != "completion"} for r in arithmetic(n, seed=0)]
    config = GRPOConfig(output_dir=str(workdir / "plain"), **{**SETTINGS, "max_steps": steps},
                        per_device_train_batch_size=PER_DEVICE, gradient_accumulation_steps=1, report_to=[],
                        bf16=False, fp16=False, use_cpu=True, activation_checkpointing=False,
                        dataloader_pin_memory=False, reward_weights=[1.0])
    return GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), reward_funcs=[numeric_reward], args=config,
                       train_dataset=Dataset.from_list(records), processing_class=AutoTokenizer.from_pretrained(path))


class PhaseTimer:
    """Accumulates wall time spent inside chosen methods of one trainer instance."""

    def __init__(self, trainer, names: list[str]):
        self.seconds = dict.fromkeys(names, 0.0)
        for name in names:
            original = getattr(trainer, name)

            def timed(*args, _original=original, _name=name, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.seconds[_name] += time.perf_counter() - start

            setattr(trainer, name, timed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--n", type=int, default=400)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        trainers = {"posttrain": posttrain_trainer(workdir, args.n, args.steps),
                    "trl": plain_trl_trainer(workdir, args.n, args.steps)}
        clocks = {name: StepClock(warmup=2) for name in trainers}
        for name, trainer in trainers.items():
            trainer.add_callback(clocks[name])
            trainer.remove_callback(PrinterCallback)
        phases = PhaseTimer(trainers["posttrain"], ["_generate", "_calculate_rewards"])
        posttrain_wall = 0.0
        for r in range(args.rounds):
            for name in (["posttrain", "trl"] if r % 2 == 0 else ["trl", "posttrain"]):
                start = time.perf_counter()
                trainers[name].train()
                if name == "posttrain":
                    posttrain_wall += time.perf_counter() - start
    median = {name: statistics.median(clock.times) for name, clock in clocks.items()}
    print("\n## posttrain GRPO vs plain TRL GRPOTrainer (same model, data, settings)")
    print(f"rounds={args.rounds} steps/round={args.steps} timed steps each={len(clocks['trl'].times)}; "
          f"{PER_DEVICE} completions per step ({PER_DEVICE // SETTINGS['num_generations']} prompts x "
          f"{SETTINGS['num_generations']}), up to {SETTINGS['max_completion_length']} tokens")
    print(f"ratio of median step times posttrain/TRL: {median['posttrain'] / median['trl']:.3f}  (goal <= 1.03)")
    generation, reward = phases.seconds["_generate"], phases.seconds["_calculate_rewards"]
    print("\n## Where posttrain's GRPO step time goes (all rounds, train() wall time)")
    print("| phase | share |\n|---|---|")
    print(f"| generation | {generation / posttrain_wall:.1%} |")
    print(f"| reward | {reward / posttrain_wall:.1%} |")
    print(f"| update and the rest (log-probs, loss, backward, optimizer, data) | "
          f"{(posttrain_wall - generation - reward) / posttrain_wall:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
