"""The journey-vs-shortcut experiment (O1 Replication Journey, arXiv 2410.18982) as one recipe.

    posttrain run recipes/quickstart/journey-vs-shortcut.yaml

1. SFT phase 1 on plain worked solutions (`phase1:`), evaluated.
2. Reasoning trees sampled from the phase-1 model (`trees:`), so the wrong steps are the model's
   own mistakes, rated by the task's step checker and final-answer verifier.
3. SFT phase 2 from the phase-1 model on shortcut traces and, separately, on journey traces from
   the same trees, with the same step budget, for every seed in `phase2.seeds`; each evaluated on
   the same held-out set.
4. comparison.md, comparison.json and comparison.png in the run directory: accuracy (mean and
   standard deviation over seeds), tokens trained, how often answers contain a reflection, and how
   often that reflection followed a step that really was wrong.

Finished runs are skipped on a rerun, as in pipelines; the trees are built once.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from posttrain.errors import RecipeError

VARIANTS = ("shortcut", "journey")


@dataclass
class JourneyExperiment:
    source: Path
    name: str
    data: dict  # the raw recipe (after extends and overrides)
    origins: dict
    phase1: object  # LoadedRecipe

    @property
    def root(self) -> Path:
        return Path(self.data.get("run", {}).get("dir", "runs")) / self.name

    @property
    def seeds(self) -> list[int]:
        return list(self.data["phase2"].get("seeds", [0, 1, 2]))

    trees: object = None  # TreesSpec


def trees_spec_class():
    """The `trees:` block's schema (built lazily: recipe.py imports this module on demand)."""
    from pydantic import Field

    from posttrain.recipe import DataSource, _Block

    class TreesSpec(_Block):
        questions: DataSource
        width: int = Field(4, gt=0)
        depth: int = Field(8, gt=0)
        beam: int = Field(2, gt=0)
        temperature: float = Field(1.0, gt=0)
        step_tokens: int = Field(32, gt=0)
        reward: str = "verifier"
        judge: str | None = None
        include_gold: bool = False
        seed: int = 0

    return TreesSpec


SHARED = ("model", "eval", "description")


def _stage_origins(origins: dict, block: str) -> dict:
    shared = {p: o for p, o in origins.items() if p[:1] and p[0] in SHARED}
    own = {p[1:]: o for p, o in origins.items() if p[:1] == (block,) and len(p) > 1}
    return {**shared, **own}


def phase_recipe(raw: dict, block: str, replace: dict | None = None) -> dict:
    """A plain SFT recipe dict for one phase: the shared keys, the block's own, then `replace`."""
    recipe = {"method": "sft", **{k: copy.deepcopy(raw[k]) for k in SHARED if k in raw}}
    recipe.update(copy.deepcopy({k: v for k, v in raw[block].items() if k not in ("seeds", "traces")}))
    recipe.update(replace or {})
    return recipe


def load_experiment(data: dict, origins: dict, source: Path) -> JourneyExperiment:
    from posttrain.recipe import locate

    kind = data.get("experiment")
    if kind != "journey_vs_shortcut":
        raise RecipeError(str(locate(origins, source, ("experiment",))), "experiment",
                          f"unknown experiment {kind!r}; the one built in is journey_vs_shortcut")
    for block in ("phase1", "trees", "phase2"):
        if not isinstance(data.get(block), dict):
            raise RecipeError(str(locate(origins, source, (block,))), block, f"the experiment needs a {block}: block")
    unknown = set(data) - {"experiment", "phase1", "trees", "phase2", "run", "extends", *SHARED}
    if unknown:
        key = sorted(unknown)[0]
        raise RecipeError(str(locate(origins, source, (key,))), key,
                          "not a key of the experiment (experiment, model, eval, phase1, trees, phase2, run)")
    name = (data.get("run") or {}).get("name") or source.stem
    root = Path((data.get("run") or {}).get("dir", "runs")) / name
    if "eval" not in data:
        raise RecipeError(str(source), "eval", "the experiment compares held-out accuracy: add an eval block")
    phase1 = _validate_phase(phase_recipe(data, "phase1", {"run": {"name": "phase1", "dir": str(root)}}),
                             origins, source, "phase1")
    # Phase 2 is checked now with procedural trees standing in for the sampled ones.
    for kind in VARIANTS:
        _validate_phase(_phase2_dict(data, root, kind, 0, trees=None), origins, source, "phase2")
    trees = _validate_trees(data["trees"], origins, source)
    return JourneyExperiment(source, name, data, origins, phase1, trees)


def _validate_trees(block: dict, origins: dict, source: Path):
    """The trees: block checked when the recipe loads, not after phase 1 has trained."""
    from pydantic import ValidationError

    from posttrain.data.build_trees import _resolve_judge
    from posttrain.recipe import locate
    from posttrain.rewards import resolve_reward

    spec_class = trees_spec_class()

    def error(path: tuple, message: str) -> RecipeError:
        full = ("trees", *path)
        return RecipeError(str(locate(origins, source, full)), ".".join(map(str, full)), message)

    extra = set(block) - set(spec_class.model_fields)
    if extra:
        raise error((sorted(extra)[0],), f"unknown key; trees takes {', '.join(sorted(spec_class.model_fields))}")
    if not isinstance(block.get("questions"), dict):
        raise error(("questions",), "a data source of task records to build trees for, "
                                    "e.g. {task: arithmetic, n: 400, seed: 1}")
    try:
        spec = spec_class.model_validate(block)
    except ValidationError as exc:
        err = exc.errors()[0]
        got = err.get("input")
        shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
        raise error(tuple(err["loc"]), f"{err['msg'].removeprefix('Value error, ')}{shown}") from None
    for key, check in (("judge", _resolve_judge), ("reward", resolve_reward)):
        try:
            check(getattr(spec, key))
        except LookupError as exc:
            raise error((key,), str(exc)) from None
    return spec


def _validate_phase(recipe: dict, origins: dict, source: Path, block: str):
    from posttrain.recipe import validate

    try:
        return validate(recipe, _stage_origins(origins, block), source)
    except RecipeError as exc:  # name the key as it is written in the experiment
        shared = exc.key.split(".")[0] in SHARED
        raise RecipeError(exc.where, exc.key if shared or not exc.key else f"{block}.{exc.key}", exc.message) from None


def _phase2_dict(data: dict, root: Path, kind: str, seed: int, trees: Path | None, model: Path | None = None) -> dict:
    traces = {**data["phase2"].get("traces", {}), "kind": kind, "seed": seed}
    if kind == "shortcut":
        traces = {"kind": "shortcut", "seed": seed}
    source = ({"path": str(Path(trees).resolve())} if trees else {"task": "arithmetic_trees", "n": 4}) | {"traces": traces}
    recipe = phase_recipe(data, "phase2", {"data": {"train": [source]},
                                           "run": {"name": f"{kind}-seed{seed}", "dir": str(root)}})
    recipe["trainer"] = {**recipe.get("trainer", {}), "seed": seed}
    if model is not None:
        recipe["model"] = {k: v for k, v in recipe["model"].items() if k not in ("tiny", "chat_template")}
        recipe["model"]["name_or_path"] = str(Path(model).resolve())
    if "eval" in recipe:
        recipe["eval"] = {**recipe["eval"], "baseline": False}
    return recipe


# ----------------------------------------------------------------------------- running


def run_experiment(exp: JourneyExperiment) -> list[dict]:
    from posttrain.runs import last_logged, run_recipe
    from posttrain.trainers import common

    started = time.monotonic()
    root = exp.root
    root.mkdir(parents=True, exist_ok=True)
    phase1_dir = root / "phase1"
    rows = []
    phase1_eval = _run_or_reuse(exp.phase1, phase1_dir, run_recipe)

    trees_file = root / "trees.jsonl"
    if not trees_file.is_file():
        _build_trees(exp, phase1_dir / "final", trees_file)
    tree_stats = json.loads((root / "trees.json").read_text())

    results: dict[str, list[dict]] = {kind: [] for kind in VARIANTS}
    for seed in exp.seeds:
        for kind in VARIANTS:
            loaded = _validate_phase(_phase2_dict(exp.data, root, kind, seed, trees_file, phase1_dir / "final"),
                                     exp.origins, exp.source, "phase2")
            run_dir = root / f"{kind}-seed{seed}"
            report = _run_or_reuse(loaded, run_dir, run_recipe)
            results[kind].append({"seed": seed, "accuracy": report["accuracy"],
                                  "tokens": last_logged(run_dir / "metrics.jsonl", "num_tokens"),
                                  **reflection_stats(run_dir / "eval" / "samples.jsonl",
                                                     exp.data["phase2"].get("traces", {}).get("reflection", "Wait"))})
    rows.append({"model": "phase 1 (worked solutions)", "accuracy_mean": phase1_eval["accuracy"],
                 "accuracy_std": 0.0, "seeds": 1, "tokens": last_logged(phase1_dir / "metrics.jsonl", "num_tokens"),
                 **reflection_stats(phase1_dir / "eval" / "samples.jsonl",
                                    exp.data["phase2"].get("traces", {}).get("reflection", "Wait"))})
    for kind in VARIANTS:
        runs = results[kind]
        accuracies = [r["accuracy"] for r in runs]
        rows.append({"model": f"phase 2 on {kind} traces",
                     "accuracy_mean": statistics.mean(accuracies),
                     "accuracy_std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                     "seeds": len(runs), "tokens": statistics.mean(r["tokens"] or 0 for r in runs),
                     "with_reflection": statistics.mean(r["with_reflection"] for r in runs),
                     "reflection_after_wrong_step": _mean_or_none([r["reflection_after_wrong_step"] for r in runs]),
                     "wrong_steps": _mean_or_none([r["wrong_steps"] for r in runs]),
                     "per_seed": runs})
    summary = {"rows": rows, "trees": tree_stats, "wall_seconds": time.monotonic() - started,
               "held_out": phase1_eval["samples"]}
    if common.is_main_process():
        common.write_atomic(root / "comparison.json", json.dumps(summary, indent=2) + "\n")
        common.write_atomic(root / "comparison.md", comparison_markdown(summary))
        plot(rows, root / "comparison.png")
        print(comparison_markdown(summary))
        print(f"posttrain: comparison in {root}/comparison.md and comparison.png")
    return rows


def _run_or_reuse(loaded, run_dir: Path, run_recipe) -> dict:
    from posttrain.trainers.common import RunDir

    report_file = run_dir / "eval" / "report.json"
    if (run_dir / "final" / "config.json").is_file() and report_file.is_file():
        print(f"posttrain: {run_dir.name} is finished; reusing it")
        return json.loads(report_file.read_text())["trained"]
    checkpoint = RunDir(run_dir).last_checkpoint()
    return run_recipe(loaded, resume=checkpoint is not None)["eval"]["trained"]


def _build_trees(exp: JourneyExperiment, model_dir: Path, out: Path) -> None:
    from posttrain.data.build_trees import build_trees
    from posttrain.data.loading import load_source
    from posttrain.recipe import Device
    from posttrain.trainers.common import load_model_and_tokenizer, write_atomic

    records = load_source(exp.trees.questions, "task").records
    device = Device.detect()
    model, tokenizer = load_model_and_tokenizer(exp.phase1, device, path=str(model_dir), preflight=False)
    started = time.monotonic()
    trees, stats = build_trees(model, tokenizer, records, **exp.trees.model_dump(exclude={"questions"}))
    stats = dict(stats)
    stats["seconds"] = round(time.monotonic() - started, 1)
    write_atomic(out.with_name("trees.json"), json.dumps(stats, indent=2) + "\n")
    write_atomic(out, "".join(json.dumps(t) + "\n" for t in trees))
    print(f"posttrain: {stats['trees']} trees from {stats['questions']} questions sampled from phase 1 "
          f"({stats.get('dropped: no correct path', 0)} without a correct path); "
          f"{stats['incorrect steps']} of {stats['steps']} steps incorrect")


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def reflection_stats(samples_file: Path, reflection_template: str) -> dict:
    """How many answers reflect ("Wait ..."), and how many reflections follow a step that really
    was wrong (by the arithmetic step checker against the record's worked solution)."""
    from posttrain.data.build_trees import arithmetic_judge
    from posttrain.data.tasks import arithmetic_solution

    marker = reflection_template.split("{")[0].strip().split(",")[0].split(" ")[0] or "Wait"
    answers = with_reflection = reflections = after_wrong = steps_seen = steps_wrong = 0
    for line in samples_file.read_text().splitlines() if samples_file.is_file() else []:
        sample = json.loads(line)
        prompt = sample["prompt"][-1]["content"] if isinstance(sample["prompt"], list) else sample["prompt"]
        gold = arithmetic_solution(prompt)
        record = {"completion": [{"role": "assistant", "content": gold}]}
        for answer in sample["answers"]:
            answers += 1
            lines = [x.strip() for x in answer.split("\n") if x.strip()]
            hits = [i for i, x in enumerate(lines) if x.startswith(marker)]
            if hits:
                with_reflection += 1
            if gold is None:
                continue
            written = [x for x in lines if _is_step(x, marker)]
            for j, step in enumerate(written):  # the base rate: how often any written step is wrong
                verdict = arithmetic_judge(record, _kept_path(written[:j], gold), step)
                steps_seen += 1
                steps_wrong += verdict is not None and verdict[0] == "incorrect"
            for i in hits:
                if i == 0:
                    continue
                reflections += 1
                steps = [x for x in lines[: i - 1] if _is_step(x, marker)]
                verdict = arithmetic_judge(record, _kept_path(steps, gold), lines[i - 1])
                after_wrong += verdict is not None and verdict[0] == "incorrect"
    return {"with_reflection": with_reflection / answers if answers else 0.0,
            "reflection_after_wrong_step": after_wrong / reflections if reflections else None,
            "wrong_steps": steps_wrong / steps_seen if steps_seen else None}


def _is_step(line: str, marker: str) -> bool:
    return not (line.startswith(marker) or "go back" in line.lower() or "redo" in line.lower()
                or line.startswith("Answer"))


def _kept_path(steps: list[str], gold: str) -> list[str]:
    """The correct steps before a reflected-on step: the longest prefix of the gold steps that the
    answer wrote (detours and their reflections removed)."""
    gold_steps = [x for x in gold.split("\n") if not x.startswith("Answer")]
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

    lines = ["| model | held-out accuracy (mean +- std) | seeds | tokens trained | answers with a reflection "
             "| reflections after a wrong step | wrong steps, all answers |", "|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['model']} | {100 * row['accuracy_mean']:.1f} +- {100 * row['accuracy_std']:.1f} | "
                     f"{row['seeds']} | {row['tokens'] or 0:,.0f} | {pct(row.get('with_reflection'))} | "
                     f"{pct(row.get('reflection_after_wrong_step'))} | {pct(row.get('wrong_steps'))} |")
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
