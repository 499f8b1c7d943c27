"""posttrain's SFT against a plain TRL SFTTrainer, and padded vs padding-free vs packed batches.

    python bench/sft_overhead.py                 # ~3 minutes on 2 CPU cores
    python bench/sft_overhead.py --rounds 5      # tighter medians
    python bench/sft_overhead.py --part layouts --data countdown-search   # long, uneven traces

Part 1 builds posttrain's trainer (from a recipe, through `trainers.skeleton.build_trainer`) and a plain TRL
SFTTrainer with the same model, data and settings, then alternates them in rounds inside one
process and prints the ratio of median step times (goal: <= 1.02). Both trainers are built
once; each round calls `train()` again, and the first steps of each call are dropped as warm-up.

Part 2 trains the same data with different batch layouts and reports, per layout, the fraction
of real (non-pad) tokens in a batch, real tokens per second, and the attention positions
computed per real token (without a variable-length attention kernel, padding-free and packed
rows attend over the whole row through a block-diagonal mask: quadratic in the row length).

Only ratios measured side by side in this one run are meaningful; absolute times are not.
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

import torch  # noqa: E402
from transformers import PrinterCallback, TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()

RECIPE = """\
method: sft
model: {{name_or_path: tiny}}
data:
  train:
    - {{task: arithmetic, n: {n}, seed: 0}}
batch: {{per_device: 32, global: 32}}
trainer:
  max_steps: {steps}
  learning_rate: 1.0e-3
  lr_scheduler_type: constant_with_warmup
  warmup_steps: 10
  logging_steps: 1000
  save_strategy: "no"
  disable_tqdm: true
  train_sampling_strategy: random
  seed: 0
run: {{name: bench, dir: {dir}}}
"""


class StepClock(TrainerCallback):
    """Wall time between consecutive optimizer steps (data collation included)."""

    def __init__(self, warmup: int):
        self.warmup, self.times, self._last, self._seen = warmup, [], None, 0

    def on_train_begin(self, *args, **kwargs):
        self._last, self._seen = time.perf_counter(), 0

    def on_step_end(self, *args, **kwargs):
        now = time.perf_counter()
        self._seen += 1
        if self._seen > self.warmup:
            self.times.append(now - self._last)
        self._last = now


class BatchStats:
    """Wraps a data collator to count real tokens, padded positions and attention work."""

    def __init__(self, collator):
        self.collator, self.batches, self.real, self.total, self.attention = collator, 0, 0, 0, 0

    def __call__(self, examples):
        batch = self.collator(examples)
        self.batches += 1
        ids = batch["input_ids"]
        self.total += ids.numel()
        if "attention_mask" not in batch:  # padding-free / packed rows: no pad, one dense mask per row
            self.real += ids.numel()
            self.attention += ids.shape[0] * ids.shape[1] * ids.shape[1]
        else:
            mask = batch["attention_mask"]
            self.real += int(mask.sum())
            self.attention += ids.shape[0] * ids.shape[1] * ids.shape[1]
        return batch


def plain_trl_trainer(records, tokenizer_path: str, out: str, steps: int, **layout):
    """A TRL SFTTrainer written out by hand, with the settings posttrain resolves on CPU."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    per_device = layout.pop("per_device", 32)
    accumulation = layout.pop("accumulation", 1)
    config = SFTConfig(
        output_dir=out, max_steps=steps, learning_rate=1e-3, lr_scheduler_type="constant_with_warmup",
        warmup_steps=10, logging_steps=1000, save_strategy="no", disable_tqdm=True, seed=0,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=accumulation, report_to=[],
        bf16=False, fp16=False, use_cpu=True, activation_checkpointing=False,
        dataloader_pin_memory=False, **layout,
    )
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tokenizer_path), args=config,
                      train_dataset=Dataset.from_list(records),
                      processing_class=AutoTokenizer.from_pretrained(tokenizer_path))


def posttrain_trainer(workdir: Path, n: int, steps: int):
    from posttrain.recipe import Device, load_run
    from posttrain.rundir import RunDir, prepare
    from posttrain.trainers.skeleton import build_trainer

    recipe = workdir / "bench.yaml"
    recipe.write_text(RECIPE.format(n=n, steps=steps, dir=workdir / "runs"))
    loaded = load_run(recipe)
    run = RunDir(loaded.run_dir)
    prepare(run, resume=False, overwrite=True)
    return build_trainer(loaded, run, None, Device.detect())


def overhead(workdir: Path, rounds: int, steps: int, n: int) -> float:
    from posttrain.tasks import arithmetic
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    ours = posttrain_trainer(workdir, n, steps)
    theirs = plain_trl_trainer(arithmetic(n, seed=0), str(tiny_model_path(TinyModelSpec())),
                               str(workdir / "plain"), steps)
    clocks = {"posttrain": StepClock(warmup=3), "trl": StepClock(warmup=3)}
    trainers = {"posttrain": ours, "trl": theirs}
    for name, trainer in trainers.items():
        trainer.add_callback(clocks[name])
        trainer.remove_callback(PrinterCallback)  # disable_tqdm prints every train() summary
    for r in range(rounds):
        order = ["posttrain", "trl"] if r % 2 == 0 else ["trl", "posttrain"]
        for name in order:
            trainers[name].train()
    med = {name: statistics.median(c.times) for name, c in clocks.items()}
    ratio = med["posttrain"] / med["trl"]
    print("\n## posttrain SFT vs plain TRL SFTTrainer (same model, data, settings)")
    print(f"rounds={rounds} steps/round={steps} timed steps each={len(clocks['trl'].times)}")
    print(f"ratio of median step times posttrain/TRL: {ratio:.3f}  (goal <= 1.02)")
    return ratio


LAYOUTS = {  # name -> SFTConfig keyword arguments; per_device chosen for similar tokens per step
    "padded (TRL default)": {"per_device": 32},
    "padded, length-grouped": {"per_device": 32, "train_sampling_strategy": "group_by_length"},
    "padding-free": {"per_device": 32, "padding_free": True, "max_length": None},
    "packed bfd, max_length 1024": {"per_device": 2, "packing": True, "max_length": 1024},
    "packed bfd, max_length 256": {"per_device": 8, "packing": True, "max_length": 256},
}


# Countdown search traces (recipes/journey-countdown): 20-470 tokens, so a padded batch of 32 is
# mostly padding. Smaller micro-batches with gradient accumulation keep the same examples in each
# optimizer step and the same loss (transformers divides by the tokens of the whole accumulated
# step), unlike length grouping, which changes which examples share a step, hence how much each
# token weighs in TRL's per-step token mean.
SEARCH_LAYOUTS = {
    "padded, 32 x 1 (TRL default)": {"per_device": 32},
    "padded, length-grouped": {"per_device": 32, "train_sampling_strategy": "group_by_length"},
    "padded, 8 x 4 accumulated": {"per_device": 8, "accumulation": 4},
    "padded, 4 x 8 accumulated": {"per_device": 4, "accumulation": 8},
    "padded, 2 x 16 accumulated": {"per_device": 2, "accumulation": 16},
    "padding-free": {"per_device": 32, "padding_free": True, "max_length": None},
}


def search_records(n: int) -> list[dict]:
    from posttrain.data.trees import TraceOptions, build_traces
    from posttrain.tasks import generate

    options = {"count": 3, "max_number": 10, "max_target": 50, "use_all": True, "max_nodes": 16,
               "question": "Make {target} from {numbers}."}
    trees = generate("countdown_search_trees", n, "train", 1, **options)
    traces = TraceOptions(journey="search", reflection="Wait, {critique}", backtrack="Let me go back.")
    return [{"prompt": r["prompt"], "completion": r["completion"]}
            for r in build_traces(trees, "journey", seed=0, options=traces)[0]]


def layouts(workdir: Path, rounds: int, steps: int, n: int, data: str = "arithmetic") -> dict[str, dict]:
    from posttrain.tasks import arithmetic
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    records = arithmetic(n, seed=0) if data == "arithmetic" else search_records(min(n, 1000))
    table = LAYOUTS if data == "arithmetic" else SEARCH_LAYOUTS
    path = str(tiny_model_path(TinyModelSpec()))
    trainers, clocks, stats, accumulation = {}, {}, {}, {}
    for name, layout in table.items():
        accumulation[name] = layout.get("accumulation", 1)
        trainer = plain_trl_trainer(records, path, str(workdir / name.replace(" ", "_")), steps, **dict(layout))
        stats[name] = trainer.data_collator = BatchStats(trainer.data_collator)
        clocks[name] = StepClock(warmup=2)
        trainer.add_callback(clocks[name])
        trainer.remove_callback(PrinterCallback)
        trainers[name] = trainer
    names = list(table)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            trainers[name].train()
    results = {}
    for name in names:
        s, c = stats[name], clocks[name]
        steps_done = s.batches / accumulation[name]
        step = statistics.median(c.times)
        results[name] = {
            "real_fraction": s.real / s.total,
            "real_tokens_per_step": s.real / steps_done,
            "real_tokens_per_s": s.real / steps_done / step,
            "attention_per_real_token": s.attention / s.real,
            "step_s": step,
        }
    base = results[names[0]]
    what = "the bundled arithmetic data" if data == "arithmetic" else "Countdown search (journey) traces"
    print(f"\n## Batch layouts on {what} (tiny model, CPU)")
    print("| layout | real tokens / batch tokens | real tokens / step | step time (rel.) "
          "| real tokens / s (rel.) | attention positions / real token |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['real_fraction']:.2f} | {r['real_tokens_per_step']:.0f} "
              f"| {r['step_s'] / base['step_s']:.2f} | {r['real_tokens_per_s'] / base['real_tokens_per_s']:.2f} "
              f"| {r['attention_per_real_token']:.0f} |")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--part", choices=["all", "overhead", "layouts"], default="all")
    parser.add_argument("--data", choices=["arithmetic", "countdown-search"], default="arithmetic",
                        help="the records part 2 trains on")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in {"all", "overhead"}:
            overhead(Path(tmp), args.rounds, args.steps, args.n)
        if args.part in {"all", "layouts"}:
            layouts(Path(tmp), max(2, args.rounds // 2), max(8, args.steps // 2), args.n, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
