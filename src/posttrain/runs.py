"""A run, start to finish: prepare the run directory, (optionally) score the starting model,
train with the recipe's method, save, and score the trained model."""

from __future__ import annotations

import importlib
import json

from posttrain.recipe import Device, LoadedRecipe
from posttrain.trainers import common


def _needs_hub(loaded: LoadedRecipe) -> bool:
    spec = loaded.spec
    sources = [*spec.data.train, *spec.data.eval, *(spec.eval.data if spec.eval else [])]
    local_model = spec.model.name_or_path == "tiny" or spec.model.name_or_path.startswith("/")
    return not local_model or any(s.hub for s in sources)


def eval_datasets(loaded: LoadedRecipe) -> dict[str, list[dict]]:
    from posttrain.data.loading import load_source

    return {source.label: load_source(source, "task").records for source in loaded.spec.eval.data}


def evaluate_model(loaded: LoadedRecipe, model_dir: str, device: Device, datasets: dict):
    from posttrain.evaluation.evaluate import evaluate_datasets

    model, tokenizer = common.load_model_and_tokenizer(loaded, device, path=model_dir, preflight=False)
    if device.cuda:
        model = model.to("cuda")
    return evaluate_datasets(model, tokenizer, datasets, loaded.spec.eval)


def report_header(loaded: LoadedRecipe) -> dict:
    spec = loaded.spec.eval
    return {"data": [s.label for s in spec.data], "reward": spec.reward, "samples_per_prompt": spec.n,
            "temperature": spec.temperature, "max_new_tokens": spec.max_new_tokens}


def write_report(eval_dir, report: dict, samples: list[dict]) -> None:
    from posttrain.evaluation.evaluate import report_markdown, write_samples

    eval_dir.mkdir(parents=True, exist_ok=True)
    write_samples(eval_dir / "samples.jsonl", samples)
    common.write_atomic(eval_dir / "report.json", json.dumps(report, indent=2) + "\n")
    common.write_atomic(eval_dir / "report.md", report_markdown(report))


def run_recipe(loaded: LoadedRecipe, resume: bool = False, overwrite: bool = False) -> dict:
    from posttrain.hub import go_offline_if_unreachable

    if _needs_hub(loaded):
        reason = go_offline_if_unreachable()
        if reason:
            print(f"posttrain: the Hugging Face hub is unreachable ({reason}); using the local cache only")
    from posttrain.trainers.faults import STOP, Interrupted

    STOP.install()  # a stop signal from here on checkpoints instead of killing (faults.py)
    device = Device.detect()
    run, checkpoint = common.prepare_run_dir(loaded, resume, overwrite)
    eval_dir = run.path / "eval"
    report: dict = {}
    evaluating = loaded.spec.eval is not None and common.is_main_process()  # only rank 0 evaluates
    datasets = eval_datasets(loaded) if evaluating else {}
    if evaluating:
        eval_dir.mkdir(exist_ok=True)
        report = report_header(loaded)
        baseline_file = eval_dir / "baseline.json"
        if loaded.spec.eval.baseline:
            if baseline_file.is_file():
                report["baseline"] = json.loads(baseline_file.read_text())
            else:
                report["baseline"], _ = evaluate_model(loaded, common.model_path(loaded), device, datasets)
                common.write_atomic(baseline_file, json.dumps(report["baseline"]) + "\n")
            print(f"posttrain: held-out accuracy before training: {_percent(report['baseline'])}")

    try:
        metrics = trainer_for(loaded.spec.method)(loaded, run, checkpoint, device)
    except Interrupted:
        common.finish_tracking({})  # W&B resumes the same run id with --resume
        raise

    if evaluating:
        report["trained"], samples = evaluate_model(loaded, str(run.final), device, datasets)
        write_report(eval_dir, report, samples)
        print(f"posttrain: held-out accuracy after training: {_percent(report['trained'])}")
    common.finish_tracking({f"eval/{k}_accuracy": v["accuracy"] for k, v in report.items()
                            if k in ("baseline", "trained")})
    print(f"posttrain: run directory {run.path}")
    return {"train": metrics, "eval": report, "run_dir": str(run.path)}


def _percent(summary: dict) -> str:
    return f"{100 * summary['accuracy']:.1f}% ({summary['correct']}/{summary['samples']})"


def evaluate_recipe(loaded: LoadedRecipe, model_dir: str | None, output: str | None) -> dict:
    """`posttrain eval`: score a model (default: the run's final/) as the recipe's eval block says."""
    from pathlib import Path

    from posttrain.errors import UserError

    if loaded.spec.eval is None:
        raise loaded.error(("eval",), "the recipe has no eval block to evaluate with")
    run_dir = Path(loaded.spec.run.dir) / loaded.run_name
    model_dir = model_dir or str(run_dir / "final")
    if not (Path(model_dir) / "config.json").is_file() and model_dir != "tiny":
        raise UserError(f"{model_dir}: no model there (config.json missing); pass --model DIR")
    path = common.model_path(loaded) if model_dir == "tiny" else model_dir
    report = report_header(loaded)
    report["model_path"] = path
    report["model"], samples = evaluate_model(loaded, path, Device.detect(), eval_datasets(loaded))
    eval_dir = Path(output) if output else run_dir / "eval"
    write_report(eval_dir, report, samples)
    print(f"posttrain: accuracy {_percent(report['model'])}; report in {eval_dir}")
    return report


def last_logged(metrics_file, key: str):
    """The last value logged under `key` in a metrics.jsonl, or None."""
    if not metrics_file.is_file():
        return None
    values = [json.loads(line).get(key) for line in metrics_file.read_text().splitlines() if line.strip()]
    values = [v for v in values if v is not None]
    return values[-1] if values else None


def pipeline_summary_markdown(rows: list[dict]) -> str:
    lines = ["# Pipeline", "", "| stage | method | held-out accuracy | mean reward | tokens trained | training time | wall time |",
             "|---|---|---|---|---|---|---|"]

    def seconds(value):
        return "" if value is None else f"{value:.0f} s"

    for row in rows:
        accuracy = "" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
        reward = "" if row["mean_reward"] is None else f"{row['mean_reward']:.3f}"
        tokens = "" if row["tokens"] is None else f"{int(row['tokens']):,}"
        stage = row["stage"] + (f" (instead of {row['instead_of']})" if row.get("instead_of") else "")
        lines.append(f"| {stage} | {row['method']} | {accuracy} | {reward} | {tokens} | "
                     f"{seconds(row.get('train_seconds'))} | {seconds(row['wall_seconds'])} |")
    return "\n".join(lines) + "\n"


def place_stages(pipeline):
    """Put every stage's run directory under the pipeline's: run.dir/<pipeline>/<stage>/."""
    from pathlib import Path

    root = Path(pipeline.stages[0][1].spec.run.dir) / pipeline.name
    for name, stage in pipeline.stages:
        stage.spec.run.dir, stage.spec.run.name = str(root), name
    return root


def run_pipeline(pipeline, overwrite: bool = False) -> list[dict]:
    """Run the stages in order, each from the previous stage's final model, in one directory.

    A finished stage is skipped; an interrupted one resumes from its last checkpoint; the
    evaluation runs after each stage; summary.md compares them. A stage with `instead_of: S`
    is a comparison: it starts from the model S started from, trains for as long as S trained
    (unless it sets run.max_train_seconds itself), and later stages do not build on it.
    """
    import shutil
    import time

    root = place_stages(pipeline)
    if overwrite and root.exists() and common.is_main_process():
        shutil.rmtree(root)
    rows, previous, baseline = [], None, None
    started_from, by_name = {}, {}
    for index, (name, stage) in enumerate(pipeline.stages):
        replaced = pipeline.instead_of.get(name)
        start = started_from[replaced] if replaced else previous
        started_from[name] = start
        if start is not None:
            stage.spec.model.name_or_path = str(start)
            stage.spec.model.chat_template = None  # the previous stage saved its template
        if (start is not None or replaced) and stage.spec.eval is not None:
            stage.spec.eval.baseline = False
        if replaced and stage.spec.run.max_train_seconds is None:
            stage.spec.run.max_train_seconds = by_name[replaced].get("train_seconds") or by_name[replaced]["wall_seconds"]
        run = common.RunDir(root / name)
        record = run.path / "stage.json"
        if run.finished and record.is_file():
            print(f"posttrain: stage {name} is finished; skipping it")
            row = json.loads(record.read_text())
        else:
            what = f"{name} ({stage.spec.method}" + (f", instead of {replaced} for "
                                                       f"{stage.spec.run.max_train_seconds:.0f} s of training)"
                                                       if replaced else ")")
            print(f"posttrain: stage {index + 1}/{len(pipeline.stages)}: {what}")
            began = time.monotonic()
            checkpoint = run.last_checkpoint() if run.path.exists() else None
            result = run_recipe(stage, resume=checkpoint is not None)
            trained = result["eval"].get("trained", {})
            row = {"stage": name, "method": stage.spec.method, "instead_of": replaced,
                   "accuracy": trained.get("accuracy"), "mean_reward": trained.get("mean_reward"),
                   "tokens": last_logged(run.metrics, "num_tokens"),
                   "train_seconds": result["train"].get("train_seconds"), "wall_seconds": time.monotonic() - began,
                   "resumed_from": checkpoint.name if checkpoint else None}
            if "baseline" in result["eval"]:
                before = result["eval"]["baseline"]
                row["baseline"] = {"stage": "start", "method": "-", "accuracy": before["accuracy"],
                                   "mean_reward": before.get("mean_reward"), "tokens": None, "wall_seconds": None}
            if common.is_main_process():
                common.write_atomic(record, json.dumps(row) + "\n")
        baseline = baseline or row.pop("baseline", None)
        rows.append(row)
        by_name[name] = row
        if not replaced:
            previous = run.final
    rows = ([baseline] if baseline else []) + rows
    if common.is_main_process():
        common.write_atomic(root / "summary.json", json.dumps(rows, indent=2) + "\n")
        common.write_atomic(root / "summary.md", pipeline_summary_markdown(rows))
        print(pipeline_summary_markdown(rows))
    return rows


# Trainer modules import torch and TRL: load only the one a run needs.
TRAINERS = {"sft": "posttrain.trainers.sft:run_sft", "dpo": "posttrain.trainers.dpo:run_dpo",
            "rlvr": "posttrain.trainers.rlvr:run_rlvr"}


def trainer_for(method: str):
    module, _, function = TRAINERS[method].partition(":")
    return getattr(importlib.import_module(module), function)
