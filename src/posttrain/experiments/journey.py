"""The journey-vs-shortcut experiment (O1 Replication Journey, arXiv 2410.18982) as one recipe.

    posttrain run recipes/quickstart/journey-vs-shortcut.yaml

1. SFT phase 1 on plain worked solutions (`phase1:`), evaluated.
2. Reasoning trees sampled from the phase-1 model (`trees:`), so the wrong steps are the model's
   own mistakes, rated by the task's step checker and final-answer verifier.
3. SFT phase 2 from the phase-1 model on shortcut traces and, separately, on journey traces from
   the same trees, with the same budget (steps, or phase2.run.max_train_tokens), for every seed
   in `phase2.seeds`; each evaluated on the same held-out set.
4. comparison.md, comparison.json and comparison.png in the run directory: accuracy (mean and
   standard deviation over seeds), tokens trained, how often answers contain a reflection, and how
   often that reflection followed a step that really was wrong.

Finished runs are skipped on a rerun, as in pipelines; the trees are built once. The recipe is
loaded and checked by recipe/kinds.py (Experiment); each phase-2 run is a recipe of its own,
built and validated there once the trees and the phase-1 model exist.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from posttrain.data.build_trees import build_trees
from posttrain.data.loading import load_source, read_records
from posttrain.data.trees import TreeError, parse_tree
from posttrain.errors import UserError
from posttrain.evaluation.stats import differences_table, paired_difference, problem_scores
from posttrain.recipe import Device, Experiment, TracesSpec
from posttrain.recipe.kinds import VARIANTS
from posttrain.rewards.answers import extract_final_answer
from posttrain.rundir import (EvalDir, GroupDir, RunDir, is_main_process, mark_as_run_directory, remove_run_directory,
                              write_atomic, write_json)
from posttrain.runs import last_logged, run_recipe
from posttrain.tasks import JUDGES, SOLUTIONS, generate
from posttrain.trainers.common import load_model_and_tokenizer


def run_experiment(exp: Experiment, overwrite: bool = False, allow_changes: bool = False) -> list[dict]:
    with exp.group.lock:  # one process at a time in the experiment's directory
        if is_main_process():
            if overwrite:
                remove_run_directory(exp.root)
            mark_as_run_directory(exp.root)
        return _run_experiment(exp, allow_changes)


def _run_experiment(exp: Experiment, allow_changes: bool) -> list[dict]:
    started = time.monotonic()
    group = exp.group
    phase1 = group.stage("phase1")
    if exp.trees.source == "search" and not group.trees.is_file():
        _search_trees(exp, group)  # these need no model: read and checked before anything trains
    phase1_eval = _run_or_reuse(exp.phase1, phase1, allow_changes)
    if not group.trees.is_file():
        _build_trees(exp, phase1.final, group)
    tree_stats = json.loads(group.trees_stats.read_text())
    stats = StepStatistics.for_experiment(exp)

    results: dict[str, list[dict]] = {kind: [] for kind in VARIANTS}
    for seed in exp.seeds:
        for kind in VARIANTS:
            run = group.stage(f"{kind}-seed{seed}")
            report = _run_or_reuse(exp.phase2(kind, seed, group.trees, phase1.final), run, allow_changes)
            spent = _spent(run)
            results[kind].append({"seed": seed, "accuracy": report["accuracy"],
                                  "tokens": spent.get("train_tokens") or last_logged(run.metrics, "num_tokens"),
                                  "flops": spent.get("train_flops"), "steps": spent.get("steps"),
                                  **stats.of(EvalDir(run.eval_dir).samples)})
    spent = _spent(phase1)
    rows = [{"model": "phase 1 (worked solutions)", "accuracy_mean": phase1_eval["accuracy"],
             "accuracy_std": 0.0, "seeds": 1, "tokens": spent.get("train_tokens") or last_logged(phase1.metrics, "num_tokens"),
             "flops": spent.get("train_flops"), "steps": spent.get("steps"),
             **stats.of(EvalDir(phase1.eval_dir).samples)}]
    for kind in VARIANTS:
        runs = results[kind]
        accuracies = [r["accuracy"] for r in runs]
        rows.append({"model": f"phase 2 on {kind} traces",
                     "accuracy_mean": statistics.mean(accuracies),
                     "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                     "seeds": len(runs), "tokens": statistics.mean(r["tokens"] or 0 for r in runs),
                     "flops": _mean_or_none([r["flops"] for r in runs]),
                     "steps": _mean_or_none([r["steps"] for r in runs]),
                     "with_reflection": _mean_or_none([r["with_reflection"] for r in runs]),
                     "reflection_after_wrong_step": _mean_or_none([r["reflection_after_wrong_step"] for r in runs]),
                     "wrong_steps": _mean_or_none([r["wrong_steps"] for r in runs]),
                     "per_seed": runs})
    summary = {"rows": rows, "trees": tree_stats, "wall_seconds": time.monotonic() - started,
               "held_out": phase1_eval["samples"], "differences": _differences(exp, group)}
    if is_main_process():
        write_json(group.comparison, summary)
        write_atomic(group.comparison_markdown, comparison_markdown(summary))
        plot(rows, group.comparison_plot)
        print(comparison_markdown(summary))
        print(f"posttrain: comparison in {group.comparison_markdown} and {group.comparison_plot.name}")
    return rows


def _spent(run: RunDir) -> dict:
    """A finished run's trained tokens and estimated FLOPs, as its run record holds them."""
    return json.loads(run.spent.read_text()) if run.spent.is_file() else {}


def _differences(exp: Experiment, group: GroupDir) -> list[dict]:
    """Paired over the seeds and the same held-out problems (evaluation/stats.py): journey -
    shortcut, and each against phase 1 (the same phase-1 scores for every seed)."""
    def scores(name: str) -> list[float]:
        return problem_scores(EvalDir(group.stage(name).eval_dir).samples)

    names = ["phase1", *(f"{kind}-seed{seed}" for kind in VARIANTS for seed in exp.seeds)]
    if not all(EvalDir(group.stage(name).eval_dir).samples.is_file() for name in names):
        return []  # a run without its evaluation samples (an older run): no pairing
    arms = {kind: [scores(f"{kind}-seed{seed}") for seed in exp.seeds] for kind in VARIANTS}
    phase1 = [scores("phase1")] * len(exp.seeds)
    pairs = [("journey", "shortcut", arms["journey"], arms["shortcut"]),
             ("journey", "phase 1", arms["journey"], phase1), ("shortcut", "phase 1", arms["shortcut"], phase1)]
    return [{"a": a, "b": b, **paired_difference(x, y)} for a, b, x, y in pairs]


def _search_trees(exp: Experiment, group: GroupDir) -> None:
    """trees.source search: the questions source holds trees from a search procedure already."""
    started = time.monotonic()
    source = exp.trees.questions
    if source.task is not None:
        trees = generate(source.task, source.n or 1000, source.split or "train", source.seed, **source.options)
        where = [f"trees.questions: tree {i}" for i in range(len(trees))]
    elif source.path is not None:
        trees, where = read_records(Path(source.path), source.max_record_mb)
    else:
        raise UserError("trees.questions: trees.source search reads trees from a task or a file (path)")
    for tree, location in zip(trees, where):
        try:
            parse_tree(tree)
        except TreeError as exc:
            raise UserError(f"{location}: not a solved reasoning tree: {exc} "
                            "(trees.source search uses the source's trees as they are)") from None
    steps = [s for t in trees for s in t["steps"]]
    stats = {"trees": len(trees), "questions": len(trees), "steps": len(steps), "source": "search",
             "incorrect steps": sum(s["rating"] == "incorrect" for s in steps),
             "seconds": round(time.monotonic() - started, 1)}
    write_json(group.trees_stats, stats)
    write_atomic(group.trees, "".join(json.dumps(t) + "\n" for t in trees))
    print(f"posttrain: {stats['trees']} search trees from {exp.trees.questions.label}; "
          f"{stats['incorrect steps']} of {stats['steps']} steps are dead ends")


def _run_or_reuse(loaded, run: RunDir, allow_changes: bool) -> dict:
    if run.evaluated:
        print(f"posttrain: {run.path.name} is finished; reusing it")
        return json.loads(EvalDir(run.eval_dir).report.read_text())["trained"]
    checkpoint = run.last_checkpoint()
    return run_recipe(loaded, resume=checkpoint is not None, allow_changes=allow_changes)["eval"]["trained"]


def _build_trees(exp: Experiment, model_dir: Path, group: GroupDir) -> None:
    records = load_source(exp.trees.questions, "task").records
    device = Device.detect()
    model, tokenizer = load_model_and_tokenizer(exp.phase1, device, path=str(model_dir), preflight=False)
    started = time.monotonic()
    trees, stats = build_trees(model, tokenizer, records, **exp.trees.model_dump(exclude={"questions", "reward", "judge", "source"}),
                               reward=exp.trees.reward, judge=exp.trees.judge)
    stats = dict(stats)
    stats["seconds"] = round(time.monotonic() - started, 1)
    write_json(group.trees_stats, stats)
    write_atomic(group.trees, "".join(json.dumps(t) + "\n" for t in trees))
    print(f"posttrain: {stats['trees']} trees from {stats['questions']} questions sampled from phase 1 "
          f"({stats.get('dropped: no correct path', 0)} without a correct path); "
          f"{stats['incorrect steps']} of {stats['steps']} steps incorrect")


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


class StepStatistics:
    """How often answers reflect, how often a reflection follows a step that really was wrong,
    and how often any written step is wrong. A reflection is a line opening with the first word
    of the recipe's reflection wording; a backtrack is a line with its backtrack wording. Steps
    are judged by the question task's step judge against its worked solution; for a task
    without them (or a reflection wording with no fixed opening) those figures are None."""

    def __init__(self, traces: TracesSpec, solution=None, judge=None):
        opening = traces.reflection.split("{")[0].strip().split(",")[0].split(" ")[0]
        self.marker = opening or None
        self.backtrack = traces.backtrack.strip().lower()
        self.solution, self.judge = solution, judge

    @classmethod
    def for_experiment(cls, exp: Experiment) -> "StepStatistics":
        task = exp.trees.questions.task
        return cls(exp.traces, SOLUTIONS.get(task), JUDGES.get(task))

    def _is_reflection(self, line: str) -> bool:
        return self.marker is not None and line.startswith(self.marker)

    def _is_step(self, line: str) -> bool:
        return not (self._is_reflection(line) or line.lower() == self.backtrack
                    or extract_final_answer(line) is not None)

    def of(self, samples_file: Path) -> dict:
        answers = with_reflection = reflections = after_wrong = steps_seen = steps_wrong = 0
        for line in samples_file.read_text().splitlines() if samples_file.is_file() else []:
            sample = json.loads(line)
            prompt = sample["prompt"][-1]["content"] if isinstance(sample["prompt"], list) else sample["prompt"]
            gold = self.solution(prompt) if self.solution and self.judge else None
            record = {"completion": [{"role": "assistant", "content": gold}]}
            gold_steps = [x for x in (gold or "").split("\n") if x and self._is_step(x)]
            for answer in sample["answers"]:
                answers += 1
                lines = [x.strip() for x in answer.split("\n") if x.strip()]
                hits = [i for i, x in enumerate(lines) if self._is_reflection(x)]
                with_reflection += bool(hits)
                if gold is None:
                    continue
                written = [x for x in lines if self._is_step(x)]
                for j, step in enumerate(written):  # the base rate: how often any written step is wrong
                    verdict = self.judge(record, _kept_path(written[:j], gold_steps), step)
                    steps_seen += 1
                    steps_wrong += verdict is not None and verdict[0] == "incorrect"
                for i in hits:
                    if i == 0:
                        continue
                    reflections += 1
                    steps = [x for x in lines[: i - 1] if self._is_step(x)]
                    verdict = self.judge(record, _kept_path(steps, gold_steps), lines[i - 1])
                    after_wrong += verdict is not None and verdict[0] == "incorrect"
        return {"with_reflection": with_reflection / answers if answers and self.marker else None,
                "reflection_after_wrong_step": after_wrong / reflections if reflections else None,
                "wrong_steps": steps_wrong / steps_seen if steps_seen else None}


def reflection_stats(samples_file: Path, traces: TracesSpec, task: str = "arithmetic") -> dict:
    """StepStatistics for one samples.jsonl, for a task by name."""
    return StepStatistics(traces, SOLUTIONS.get(task), JUDGES.get(task)).of(samples_file)


def _kept_path(steps: list[str], gold_steps: list[str]) -> list[str]:
    """The correct steps before a reflected-on step: the longest prefix of the gold steps that the
    answer wrote (detours and their reflections removed)."""
    kept = []
    for step in gold_steps:
        if step in steps:
            kept.append(step)
        else:
            break
    return kept


def comparison_markdown(summary: dict) -> str:
    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    lines = ["| model | held-out accuracy (mean +- std) | seeds | tokens trained | est. FLOPs | steps "
             "| answers with a reflection | reflections after a wrong step | wrong steps, all answers |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        flops = "-" if row.get("flops") is None else f"{row['flops']:.3g}"
        steps = "-" if row.get("steps") is None else f"{row['steps']:.0f}"
        lines.append(f"| {row['model']} | {100 * row['accuracy_mean']:.1f} +- {100 * row['accuracy_std']:.1f} | "
                     f"{row['seeds']} | {row['tokens'] or 0:,.0f} | {flops} | {steps} | {pct(row.get('with_reflection'))} | "
                     f"{pct(row.get('reflection_after_wrong_step'))} | {pct(row.get('wrong_steps'))} |")
    if summary.get("differences"):
        lines += ["", *differences_table(summary["differences"])]
        lines += ["", "Paired over the same held-out problems and the phase-2 seeds; the interval counts the spread "
                  "over problems and over seeds (posttrain/evaluation/stats.py). A difference is a finding only when "
                  "its interval excludes 0; phase 1 is one run, so its own seed noise is not in the interval."]
    trees = summary["trees"]
    lines += ["", f"Held-out problems: {summary['held_out']}. Trees: {trees.get('trees')} from "
              f"{trees.get('questions')} questions ({trees.get('incorrect steps')} of {trees.get('steps')} steps "
              f"incorrect), built in {trees.get('seconds')} s. Wall time: {summary['wall_seconds'] / 60:.1f} min.",
              "Tokens trained: phase 1's own run; for phase 2, the phase-2 run alone (mean over seeds).",
              "A reflection is a line starting like the reflection template; it counts as after a wrong "
              "step when the step before it differs from the worked solution's (given the correct steps "
              "written so far). The last column is the base rate: the share of all written steps that "
              "are wrong, in every answer."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    names = [r["model"].replace("phase 2 on ", "").replace(" (worked solutions)", "") for r in rows]
    means = [100 * r["accuracy_mean"] for r in rows]
    stds = [100 * r["accuracy_std"] for r in rows]
    ax.bar(names, means, yerr=stds, capsize=6, color=["#999999", "#4c72b0", "#dd8452"][: len(rows)])
    for i, m in enumerate(means):
        ax.text(i, m + 1, f"{m:.1f}", ha="center", va="bottom")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Journey vs shortcut traces (mean +- std over seeds)")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
