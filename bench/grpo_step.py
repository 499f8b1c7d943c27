"""GRPO step time with TRL's generation against posttrain's engine, on the tiny and the real model.

    python bench/grpo_step.py                      # both models (~15 minutes on 2 cores)
    python bench/grpo_step.py --models tiny --rounds 4

Two trainers per model, built from the same recipe through posttrain (trainers.skeleton), that
differ only in `rollouts:` — `trl` (TRL's GRPOTrainer calls model.generate) or `posttrain` (the
default: trainers/rollouts.py, the same prompts, end tokens and sampling through posttrain's
decoding loop). They alternate in rounds in one process; each round trains `--steps` steps and
the first step of each round is not timed. Per model it prints the ratio of median step times
(TRL's / posttrain's: above 1 means posttrain's is faster) and, for each, the share of the step
spent generating (`_generate`, which covers the rollout's tokenisation and decoding), so what the
engine changes and what it cannot change (log-probabilities, the backward pass, the optimizer)
are both visible.

The real model is SmolLM2-135M-Instruct (`posttrain fetch-model smollm2-135m-instruct`; the
recipe is recipes/smollm2/grpo.yaml's: LoRA on the top 4 of 30 layers, 2 prompts x 8 completions
of up to 64 tokens per step, temperature 1). The tiny model runs the same settings. Only ratios
and shares measured side by side in this one run are meaningful; absolute times are not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from transformers import PrinterCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from rlvr import PhaseTimer  # noqa: E402
from sft_overhead import StepClock  # noqa: E402

hf_logging.set_verbosity_error()

REAL = "smollm2-135m-instruct"
LORA = ("{r: 16, lora_alpha: 32, lora_dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, "
        "up_proj, down_proj], layers_to_transform: [26, 27, 28, 29]}")
RECIPE = """\
method: rlvr
model: {{name_or_path: {model}}}
data:
  train:
    - {{task: arithmetic, split: train, n: 400, seed: 0, options: {{instruction: answer_line, min_operands: 2, max_operands: 2, max_value: 99}}}}
rewards: [{{name: verifier}}]
reward_preflight: {{enabled: false}}
rollouts: {rollouts}
{peft}batch: {{per_device: 16, global: 16}}
trainer: {trainer}
run: {{name: {name}, dir: {dir}}}
"""
SETTINGS = dict(num_generations=8, max_completion_length=64, temperature=1.0, learning_rate=2.0e-4, beta=0.0,
                logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0)


def build(workdir: Path, model: str, rollouts: str, steps: int):
    from posttrain.recipe import Device, load_run
    from posttrain.rundir import RunDir, prepare
    from posttrain.trainers.skeleton import build_trainer

    name = f"{model}-{rollouts}"
    recipe = workdir / f"{name}.yaml"
    recipe.write_text(RECIPE.format(model=model, rollouts=rollouts, name=name, dir=workdir / "runs",
                                    peft=f"peft: {LORA}\n" if model == REAL else "",
                                    trainer=json.dumps({**SETTINGS, "max_steps": steps})))
    loaded = load_run(recipe)
    run = RunDir(loaded.run_dir)
    prepare(run, resume=False, overwrite=True)
    return build_trainer(loaded, run, None, Device.detect())


def measure(model: str, rounds: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {r: build(Path(tmp), model, r, steps) for r in ("trl", "posttrain")}
        clocks = {r: StepClock(warmup=1) for r in trainers}
        phases = {r: PhaseTimer(t, ["_generate"]) for r, t in trainers.items()}
        wall = dict.fromkeys(trainers, 0.0)
        for name, trainer in trainers.items():
            trainer.add_callback(clocks[name])
            trainer.remove_callback(PrinterCallback)
        for r in range(rounds):
            for name in (["trl", "posttrain"] if r % 2 == 0 else ["posttrain", "trl"]):
                start = time.perf_counter()
                trainers[name].train()
                wall[name] += time.perf_counter() - start
    median = {r: statistics.median(c.times) for r, c in clocks.items()}
    return {"median": median, "timed": {r: len(c.times) for r, c in clocks.items()},
            "generation": {r: phases[r].seconds["_generate"] / wall[r] for r in trainers}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny", REAL])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    from posttrain.threads import configure_threads

    configure_threads()
    print(f"torch threads: {torch.get_num_threads()}; {os.cpu_count()} CPUs")
    results = {m: measure(m, args.rounds, args.steps) for m in args.models}
    print(f"\n## GRPO step time: TRL's generation vs posttrain's engine ({args.rounds} rounds x {args.steps} steps, "
          "first step of each round untimed; 2 prompts x 8 completions, up to 64 tokens, per step)")
    print("| model | timed steps each | TRL / posttrain (median step time) | generation share, TRL | "
          "generation share, posttrain |\n|---|---|---|---|---|")
    for model, r in results.items():
        print(f"| {model} | {r['timed']['trl']} | {r['median']['trl'] / r['median']['posttrain']:.2f}x | "
              f"{r['generation']['trl']:.0%} | {r['generation']['posttrain']:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
