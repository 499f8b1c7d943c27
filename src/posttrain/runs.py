"""Running recipes: a single run start to finish (prepare the run directory, optionally score
the starting model, train with the recipe's method, save, score the trained model), `posttrain
eval`, and pipelines (stages in order, each from the previous stage's model)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from posttrain.data.loading import load_source
from posttrain.errors import UserError
from posttrain.evaluation.evaluate import evaluate_datasets, write_report
from posttrain.hub import go_offline_if_unreachable
from posttrain.recipe import Device, LoadedRecipe, Pipeline, derive, resolved_dict
from posttrain.rundir import (EvalDir, RunDir, holds_model, is_main_process, mark_as_run_directory, prepare,
                              remove_run_directory, write_atomic, write_json)
from posttrain.trainers import common, hub_push, skeleton
from posttrain.trainers.faults import STOP, Interrupted


def _needs_hub(loaded: LoadedRecipe) -> bool:
    spec = loaded.spec
    sources = [*spec.data.train, *spec.data.eval, *(spec.eval.data if spec.eval else [])]
    local_model = spec.model.name_or_path == "tiny" or spec.model.name_or_path.startswith("/")
    return not local_model or any(s.hub for s in sources)


def eval_datasets(loaded: LoadedRecipe) -> dict[str, list[dict]]:
    return {source.label: load_source(source, "task").records for source in loaded.spec.eval.data}


def evaluate_model(loaded: LoadedRecipe, model_dir: str, device: Device, datasets: dict):
    model, tokenizer = common.load_model_and_tokenizer(loaded, device, path=model_dir, preflight=False)
    if device.cuda:
        model = model.to("cuda")
    return evaluate_datasets(model, tokenizer, datasets, loaded.spec.eval)


def generates(loaded: LoadedRecipe) -> bool:
    """Whether the method's model writes answers (a causal LM), or rates them (reward, prm)."""
    from posttrain.methods import METHODS

    return METHODS[loaded.spec.method].model == "causal_lm"


def test_time_models(loaded: LoadedRecipe, model_dir: str | None) -> tuple[str, str | None, object]:
    """(the policy, the PRM that guides search, the verifier that ranks answers) of the test-time
    curves. A generating run: its own final/, eval.test_time.prm, and that PRM as the verifier.
    A reward or process reward model's run: the policy is the model it started from, and the
    run's final/ is the PRM (prm) or the verifier (reward), unless test_time names others."""
    from posttrain.recipe.schema import RewardRef

    run, spec = RunDir(loaded.run_dir), loaded.spec.eval.test_time
    policy, prm, ranker = model_dir or str(run.final), spec.prm, spec.prm
    if not generates(loaded):
        policy = model_dir or common.model_path(loaded)
        if loaded.spec.method == "prm":
            prm = prm or str(run.final)
            ranker = prm
        else:
            ranker = str(run.final)
    verifier = spec.verifier
    if verifier is None and ranker is not None:
        verifier = RewardRef(name="reward_model", path=ranker, aggregate=spec.aggregate)
    return policy, prm, verifier


def evaluate_test_time(loaded: LoadedRecipe, outputs: EvalDir, device: Device, datasets: dict,
                       model_dir: str | None = None) -> dict:
    """eval.test_time: the curves, on every eval.data record together, into `outputs`."""
    from posttrain.evaluation.test_time import run_test_time, write_test_time

    policy, prm, verifier = test_time_models(loaded, model_dir)
    if generates(loaded):
        model, tokenizer = common.load_model_and_tokenizer(loaded, device, path=policy, preflight=False)
    else:  # the run trained a classifier; the policy is the causal LM it started from
        from transformers import AutoModelForCausalLM

        model, tokenizer = AutoModelForCausalLM.from_pretrained(policy), common.load_tokenizer(loaded, policy)
    if device.cuda:
        model = model.to("cuda")
    records = [r for rs in datasets.values() for r in rs]
    report, rows = run_test_time(model, tokenizer, records, loaded.spec.eval, prm=prm, verifier=verifier,
                                 policy_name=policy,
                                 hardware=common.hardware_name(device))
    write_test_time(outputs, report, rows)
    for strategy, points in report["curves"].items():
        print(f"posttrain: test-time {strategy}: " + ", ".join(f"N={p['budget']} {100 * p['accuracy']:.1f}%"
                                                              for p in points))
    print(f"posttrain: test-time curves in {outputs.test_time_markdown} and {outputs.test_time_plot.name}")
    return report


def report_header(loaded: LoadedRecipe) -> dict:
    spec = loaded.spec.eval
    return {"data": [s.label for s in spec.data], "reward": spec.reward.label, "samples_per_prompt": spec.n,
            "temperature": spec.temperature, "max_new_tokens": spec.max_new_tokens}


# What a resumed run must train with as before: these recipe sections, and every trainer key but these.
TRAINING_SECTIONS = ("method", "model", "data", "batch", "peft", "rewards", "dynamic_sampling")
NOT_TRAINING = {"logging_steps", "logging_first_step", "logging_strategy", "logging_nan_inf_filter", "save_steps",
                "save_strategy", "save_total_limit", "save_only_model", "report_to", "run_name", "output_dir",
                "disable_tqdm", "log_level", "eval_steps", "eval_strategy", "per_device_eval_batch_size",
                "eval_on_start", "push_to_hub", "hub_model_id", "hub_strategy", "dataloader_num_workers",
                "reward_weights"}  # the rewards section holds the weights


def _flat(value, prefix: str) -> dict:
    """Dotted keys to values: mappings and lists of mappings (data sources, rewards) are opened."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        value = dict(enumerate(value))
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}").items()}
    return {prefix: value}


def training_changes(recorded: dict, fresh: dict) -> list[str]:
    """The settings that alter training and differ between a run's recorded recipe and this one,
    as `key (old -> new)`."""
    old, new = {}, {}
    for section in TRAINING_SECTIONS:
        old.update(_flat(recorded.get(section), section))
        new.update(_flat(fresh.get(section), section))
    for side, record in ((old, recorded), (new, fresh)):
        side.update({f"trainer.{k}": v for k, v in (record.get("trainer") or {}).items() if k not in NOT_TRAINING})
        side["run.max_train_seconds"] = (record.get("run") or {}).get("max_train_seconds")
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in keys]


def check_resume(loaded: LoadedRecipe, run: RunDir, device: Device, allow_changes: bool) -> None:
    """A resumed run continues with the optimizer state and data order it had: refuse a recipe
    whose training settings changed since, unless asked (then the old record is kept aside)."""
    if not run.resolved_recipe.is_file():
        return
    import yaml

    recorded = yaml.safe_load(run.resolved_recipe.read_text()) or {}
    changes = training_changes(recorded, resolved_dict(loaded, device))
    if not changes:
        return
    listed = "; ".join(changes)
    if not allow_changes:
        raise UserError(f"run directory {run.path} was trained with other settings; resuming would continue "
                        f"its checkpoint with changed training: {listed}. Restore them, start over with "
                        "--overwrite, or resume anyway with --allow-changes")
    print(f"posttrain: resuming with changed training settings (--allow-changes): {listed}; the earlier "
          f"record is kept in {run.previous_recipe.name}")
    if is_main_process():
        write_atomic(run.previous_recipe, run.resolved_recipe.read_text())


def run_recipe(loaded: LoadedRecipe, resume: bool = False, overwrite: bool = False,
               allow_changes: bool = False) -> dict:
    hub_push.check_can_push(loaded)  # an offline machine fails now, not after training
    common.check_quantization_backend(loaded)
    common.check_vllm_server(loaded)  # GRPO's vLLM server answers (vllm_mode: server)
    if _needs_hub(loaded):
        reason = go_offline_if_unreachable()
        if reason:
            print(f"posttrain: the Hugging Face hub is unreachable ({reason}); using the local cache only")
    STOP.install()  # a stop signal from here on checkpoints instead of killing (faults.py)
    run = RunDir(loaded.run_dir)
    with run.lock:  # one process at a time in a run directory
        return _run_locked(loaded, run, resume, overwrite, allow_changes)


def _run_locked(loaded: LoadedRecipe, run: RunDir, resume: bool, overwrite: bool, allow_changes: bool) -> dict:
    device = Device.detect()
    checkpoint = prepare(run, resume, overwrite)
    if checkpoint is not None:
        check_resume(loaded, run, device, allow_changes)
    outputs = EvalDir(run.eval_dir)
    report: dict = {}
    evaluating = loaded.spec.eval is not None and is_main_process()  # only rank 0 evaluates
    datasets = eval_datasets(loaded) if evaluating else {}
    if evaluating:
        outputs.path.mkdir(exist_ok=True)
        report = report_header(loaded)
        if loaded.spec.eval.baseline:
            if outputs.baseline.is_file():
                report["baseline"] = json.loads(outputs.baseline.read_text())
            else:
                report["baseline"], _ = evaluate_model(loaded, common.model_path(loaded), device, datasets)
                write_atomic(outputs.baseline, json.dumps(report["baseline"]) + "\n")
            print(f"posttrain: held-out accuracy before training: {_percent(report['baseline'])}")

    try:
        metrics = skeleton.train(loaded, run, checkpoint, device)
    except Interrupted:
        common.finish_tracking({})  # W&B resumes the same run id with --resume
        raise

    if evaluating and generates(loaded):
        report["trained"], samples = evaluate_model(loaded, str(run.final), device, datasets)
        write_report(outputs, report, samples)
        print(f"posttrain: held-out accuracy after training: {_percent(report['trained'])}")
    if evaluating and loaded.spec.eval.test_time is not None:
        report["test_time"] = evaluate_test_time(loaded, outputs, device, datasets)
    common.finish_tracking({f"eval/{k}_accuracy": v["accuracy"] for k, v in report.items()
                            if k in ("baseline", "trained")})
    if hub_push.wants_push(loaded) and is_main_process():
        print(f"posttrain: pushed {run.final.name}/ to {hub_push.push_run(loaded, run, report or None)}")
    print(f"posttrain: run directory {run.path}")
    return {"train": metrics, "eval": report, "run_dir": str(run.path)}


def _percent(summary: dict) -> str:
    return f"{100 * summary['accuracy']:.1f}% ({summary['correct']}/{summary['samples']})"


def evaluate_recipe(loaded: LoadedRecipe, model_dir: str | None, output: str | None) -> dict:
    """`posttrain eval`: score a model (default: the run's final/) as the recipe's eval block says."""
    if loaded.spec.eval is None:
        raise loaded.error(("eval",), "the recipe has no eval block to evaluate with")
    run = RunDir(loaded.run_dir)
    given, model_dir = model_dir, model_dir or str(run.final)
    if not holds_model(Path(model_dir)) and model_dir != "tiny":
        raise UserError(f"{model_dir}: no model there (config.json missing); pass --model DIR")
    path = common.model_path(loaded) if model_dir == "tiny" else model_dir
    report = report_header(loaded)
    outputs = EvalDir(Path(output) if output else run.eval_dir)
    datasets = eval_datasets(loaded)
    if generates(loaded):
        report["model_path"] = path
        report["model"], samples = evaluate_model(loaded, path, Device.detect(), datasets)
        write_report(outputs, report, samples)
        print(f"posttrain: accuracy {_percent(report['model'])}; report in {outputs.path}")
    if loaded.spec.eval.test_time is not None:
        # the policy: the model given, else the run's own (a PRM or reward run: the model it started from)
        policy = path if given else None
        report["test_time"] = evaluate_test_time(loaded, outputs, Device.detect(), datasets, policy)
    return report


def last_logged(metrics_file: Path, key: str):
    """The last value logged under `key` in a metrics.jsonl, or None."""
    if not metrics_file.is_file():
        return None
    values = [json.loads(line).get(key) for line in metrics_file.read_text().splitlines() if line.strip()]
    values = [v for v in values if v is not None]
    return values[-1] if values else None


# ----------------------------------------------------------------------------- pipelines


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


def stage_for_running(stage, start: Path | None, budget: float | None) -> LoadedRecipe:
    """The stage's recipe as it runs: from `start` (an earlier stage's final model) when it has
    one, without a baseline score when it does not start from the base model, with the time
    budget of the stage it stands in for. A new recipe, validated; the pipeline's is unchanged."""
    changes: dict = {}
    if start is not None:
        changes["model"] = {"name_or_path": str(start.resolve()), "chat_template": None}  # the earlier stage saved its template
    if (start is not None or stage.instead_of) and stage.recipe.spec.eval is not None:
        changes["eval"] = {"baseline": False}
    if budget is not None:
        changes["run"] = {"max_train_seconds": budget}
    if not changes:
        return stage.recipe
    why = f"pipeline stage {stage.name}" + (f" (from {start})" if start is not None else "")
    return derive(stage.recipe, changes, why)


def run_pipeline(pipeline: Pipeline, overwrite: bool = False, allow_changes: bool = False) -> list[dict]:
    """Run the stages in order, each from the previous stage's final model, in one directory.

    A finished stage is skipped; an interrupted one resumes from its last checkpoint; the
    evaluation runs after each stage; summary.md compares them. A stage with `instead_of: S`
    is a comparison: it starts from the model S started from, trains for as long as S trained
    (unless it sets run.max_train_seconds itself), and later stages do not build on it.
    """
    with pipeline.group.lock:  # one process at a time in a pipeline's directory
        return _run_pipeline_locked(pipeline, overwrite, allow_changes)


def _run_pipeline_locked(pipeline: Pipeline, overwrite: bool, allow_changes: bool) -> list[dict]:
    group = pipeline.group
    if is_main_process():
        if overwrite:
            remove_run_directory(group.path)
        mark_as_run_directory(group.path)
    rows, baseline, by_name = [], None, {}
    for index, stage in enumerate(pipeline.stages):
        run = group.stage(stage.name)
        if run.finished and run.stage_record.is_file():
            print(f"posttrain: stage {stage.name} is finished; skipping it")
            row = json.loads(run.stage_record.read_text())
        else:
            start = group.stage(stage.starts_from).final if stage.starts_from else None
            budget = None
            if stage.instead_of and stage.recipe.spec.run.max_train_seconds is None:
                replaced = by_name[stage.instead_of]
                budget = replaced.get("train_seconds") or replaced["wall_seconds"]
            recipe = stage_for_running(stage, start, budget)
            what = f"{stage.name} ({recipe.spec.method}" + (
                f", instead of {stage.instead_of} for {recipe.spec.run.max_train_seconds:.0f} s of training)"
                if stage.instead_of else ")")
            print(f"posttrain: stage {index + 1}/{len(pipeline.stages)}: {what}")
            began = time.monotonic()
            checkpoint = run.last_checkpoint() if run.path.exists() else None
            result = run_recipe(recipe, resume=checkpoint is not None, allow_changes=allow_changes)
            trained = result["eval"].get("trained", {})
            row = {"stage": stage.name, "method": recipe.spec.method, "instead_of": stage.instead_of,
                   "accuracy": trained.get("accuracy"), "mean_reward": trained.get("mean_reward"),
                   "tokens": last_logged(run.metrics, "num_tokens"),
                   "train_seconds": result["train"].get("train_seconds"), "wall_seconds": time.monotonic() - began,
                   "resumed_from": checkpoint.name if checkpoint else None}
            if "baseline" in result["eval"]:
                before = result["eval"]["baseline"]
                row["baseline"] = {"stage": "start", "method": "-", "accuracy": before["accuracy"],
                                   "mean_reward": before.get("mean_reward"), "tokens": None, "wall_seconds": None}
            if is_main_process():
                write_atomic(run.stage_record, json.dumps(row) + "\n")
        baseline = baseline or row.pop("baseline", None)
        rows.append(row)
        by_name[stage.name] = row
    rows = ([baseline] if baseline else []) + rows
    if is_main_process():
        write_json(group.summary, rows)
        write_atomic(group.summary_markdown, pipeline_summary_markdown(rows))
        print(pipeline_summary_markdown(rows))
    return rows
