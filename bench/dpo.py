"""posttrain's DPO step against a plain TRL DPOTrainer with identical settings.

    python bench/dpo.py                  # ~2 minutes on 2 CPU cores
    python bench/dpo.py --rounds 6 --loss sigmoid_norm

posttrain's trainer is built from a recipe through `trainers.skeleton.build_trainer` (pair filtering, metrics
callback) with the fault callback that `posttrain run` adds (stop-signal check and complete-
checkpoint marker); the plain one is a DPOTrainer on the same tiny model, pairs and settings.
They alternate in rounds in one process; the ratio of median step times is printed (goal:
<= 1.02). Only the ratio is meaningful on a shared machine, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers import PrinterCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from sft_overhead import StepClock  # noqa: E402

hf_logging.set_verbosity_error()

PER_DEVICE = 16
SETTINGS = dict(learning_rate=1e-5, beta=0.1, max_length=256, logging_steps=1000, save_strategy="no",
                disable_tqdm=True, seed=0)

RECIPE = """\
method: dpo
model: {{name_or_path: tiny}}
data:
  train:
    - {{task: arithmetic_pairs, n: {n}, seed: 0}}
batch: {{per_device: {per_device}, global: {per_device}}}
trainer: {trainer}
run: {{name: bench, dir: {dir}}}
"""


def posttrain_trainer(workdir: Path, n: int, steps: int, loss: str):
    from posttrain.recipe import Device, load_run
    from posttrain.rundir import RunDir, prepare
    from posttrain.trainers.skeleton import build_trainer
    from posttrain.trainers.faults import fault_callback

    trainer = json.dumps({**SETTINGS, "max_steps": steps, "loss_type": [loss]})
    recipe = workdir / "bench.yaml"
    recipe.write_text(RECIPE.format(n=n, per_device=PER_DEVICE, trainer=trainer, dir=workdir / "runs"))
    loaded = load_run(recipe)
    run = RunDir(loaded.run_dir)
    prepare(run, resume=False, overwrite=True)
    built = build_trainer(loaded, run, None, Device.detect())
    built.add_callback(fault_callback(run.checkpoints, None))
    return built


def plain_trl_trainer(workdir: Path, n: int, steps: int, loss: str):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from posttrain.tasks import arithmetic_pairs
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    path = str(tiny_model_path(TinyModelSpec()))
    records = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in arithmetic_pairs(n, seed=0)]
    config = DPOConfig(output_dir=str(workdir / "plain"), **SETTINGS, max_steps=steps, loss_type=[loss],
                       per_device_train_batch_size=PER_DEVICE, gradient_accumulation_steps=1, report_to=[],
                       bf16=False, fp16=False, use_cpu=True, activation_checkpointing=False,
                       dataloader_pin_memory=False)
    return DPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), args=config,
                      train_dataset=Dataset.from_list(records), processing_class=AutoTokenizer.from_pretrained(path))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--loss", default="sigmoid", help="TRL loss type, e.g. sigmoid or sigmoid_norm")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        trainers = {"posttrain": posttrain_trainer(workdir, args.n, args.steps, args.loss),
                    "trl": plain_trl_trainer(workdir, args.n, args.steps, args.loss)}
        clocks = {name: StepClock(warmup=3) for name in trainers}
        for name, trainer in trainers.items():
            trainer.add_callback(clocks[name])
            trainer.remove_callback(PrinterCallback)
        for r in range(args.rounds):
            for name in (["posttrain", "trl"] if r % 2 == 0 else ["trl", "posttrain"]):
                trainers[name].train()
    median = {name: statistics.median(clock.times) for name, clock in clocks.items()}
    print(f"\n## posttrain DPO vs plain TRL DPOTrainer (loss {args.loss}; same model, pairs, settings)")
    print(f"rounds={args.rounds} steps/round={args.steps} timed steps each={len(clocks['trl'].times)}; "
          f"{PER_DEVICE} pairs per step")
    print(f"ratio of median step times posttrain/TRL: {median['posttrain'] / median['trl']:.3f}  (goal <= 1.02)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
