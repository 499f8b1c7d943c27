"""One interface over the three kinds of recipe file: a single run, a pipeline (`stages:`) and an
experiment (`experiment:`). Every command asks a loaded recipe the same questions:

- `stages`: its runs in order, each a validated single-run recipe, with the stage whose final
  model it starts from and, for a comparison stage, the stage it stands in for;
- `root`: the run directory that holds it all;
- `launch_recipe()`: the recipe whose `launch:` block starts it as one job;
- `evaluation_stage(model_given)`: the run whose eval block `posttrain eval` uses by default;
- `stage(name)` and `only_stage(how)`: one stage, by name or because there is only one;
- `describe()` and `resolved(device)`: what `validate` and `show` print.

A stage changed for running (the model it starts from, a time budget) is a new recipe built by
`derive`, validated like any other; nothing here changes a validated spec.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from posttrain.errors import RecipeError, UserError, did_you_mean
from posttrain.recipe.check import LoadedRecipe, check_judge, check_reward, check_task_options, pydantic_error, validate
from posttrain.recipe.load import KeyPath, Origin, dotted, locate, merge, merge_origins, read_recipe
from posttrain.recipe.schema import BUDGETS, ExperimentSpec, TracesSpec
from posttrain.rundir import GroupDir, name_problem, run_path
from posttrain.tasks import TASKS


@dataclass(frozen=True)
class Stage:
    name: str
    recipe: LoadedRecipe
    starts_from: str | None = None  # the stage whose final model it starts from; None: the recipe's model
    instead_of: str | None = None  # a comparison stage: the stage it stands in for
    budget: str | None = None  # a comparison stage: what it matches of that stage (a key of BUDGETS), None: nothing
    seed: int | None = None  # a pipeline with `seeds:`: the seed this stage trains with
    base: str | None = None  # ... and the stage's name without its -seedN
    stand_in: str | None = None  # why its data is a stand-in until an earlier stage has run


def derive(loaded: LoadedRecipe, changes: dict, why: str) -> LoadedRecipe:
    """A new recipe: `loaded`'s data with `changes` merged in (values replace, mappings merge),
    validated again. Errors in a changed key name `why` as its origin."""
    raw = merge(copy.deepcopy(loaded.raw), copy.deepcopy(changes))
    origin = Origin(override=why)
    changed = {p: origin for p in _leaf_paths(changes)}
    return validate(raw, merge_origins(loaded.origins, changed, changes), loaded.source)


def _leaf_paths(data: dict, prefix: KeyPath = ()) -> list[KeyPath]:
    paths = []
    for key, value in data.items():
        path = (*prefix, key)
        paths += _leaf_paths(value, path) if isinstance(value, dict) and value else [path]
    return paths


class RecipeKind:
    kind: str
    source: Path
    name: str
    stages: list[Stage]

    @property
    def root(self) -> Path:
        raise NotImplementedError

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise UserError(f"{self.source}: no stage named '{name}' (stages: {', '.join(s.name for s in self.stages)})")

    def launch_recipe(self) -> LoadedRecipe:
        """Every stage runs in the one job `posttrain launch` starts, so they must agree on how."""
        first = self.stages[0]
        launch = first.recipe.spec.launch.model_dump()
        for stage in self.stages[1:]:
            if stage.recipe.spec.launch.model_dump() != launch:
                raise stage.recipe.error(("launch",), f"stage '{stage.name}' launches differently from stage "
                                         f"'{first.name}'; a {self.kind} launches as one job: give every stage "
                                         "the same launch block (set it once at the top level)")
        return first.recipe

    def only_stage(self, how: str) -> Stage:
        if len(self.stages) == 1:
            return self.stages[0]
        raise UserError(f"{self.source}: a {self.kind} of {len(self.stages)} stages "
                        f"({', '.join(s.name for s in self.stages)}); pick one with {how}")

    def evaluation_stage(self, model_given: bool = False) -> Stage:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def resolved(self, resolve) -> dict:
        """`resolve(loaded) -> dict` for every stage (device.shown)."""
        return {self.kind: self.name, "stages": {s.name: resolve(s.recipe) for s in self.stages}}


# ----------------------------------------------------------------------------- a single run


@dataclass
class SingleRun(RecipeKind):
    recipe: LoadedRecipe
    kind = "run"

    @property
    def source(self) -> Path:
        return self.recipe.source

    @property
    def name(self) -> str:
        return self.recipe.run_name

    @property
    def stages(self) -> list[Stage]:
        return [Stage(self.name, self.recipe)]

    @property
    def root(self) -> Path:
        return self.recipe.run_dir

    def evaluation_stage(self, model_given: bool = False) -> Stage:
        return self.stages[0]

    def describe(self) -> str:
        return f"{self.recipe.spec.method}, run {self.name}"

    def resolved(self, resolve) -> dict:
        return resolve(self.recipe)


# ----------------------------------------------------------------------------- pipelines


@dataclass
class Pipeline(RecipeKind):
    """A recipe with `stages:`: each stage a full recipe (the shared keys merged under the
    stage's own), run in order, each starting from the previous stage's final model, each in
    run.dir/<pipeline>/<stage>/. A comparison stage (`instead_of: S`) starts from the model S
    started from, trains for as long as S trained, and no later stage builds on it."""

    source: Path
    name: str
    stages: list[Stage]
    group: GroupDir = field(repr=False)
    seeds: list[int] | None = None  # `seeds:`: every stage runs once per seed, as <stage>-seed<N>
    kind = "pipeline"

    @property
    def root(self) -> Path:
        return self.group.path

    def evaluation_stage(self, model_given: bool = False) -> Stage:
        """The last stage later stages build on (not a comparison), scored as that stage says."""
        return [s for s in self.stages if s.instead_of is None][-1]

    def describe(self) -> str:
        stages = ", ".join(f"{s.name} ({s.recipe.spec.method}" + (f", instead of {s.instead_of})" if s.instead_of else ")")
                           for s in self.stages)
        return f"pipeline {self.name}: {stages}"


def _stage_recipe(data: dict, origins, source: Path, index: int, root: Path,
                  seed: int | None = None) -> tuple[str, LoadedRecipe]:
    stage = data["stages"][index]
    prefix = ("stages", index)
    if not isinstance(stage, dict):
        raise RecipeError(str(locate(origins, source, prefix)), dotted(prefix), "a stage is a mapping of recipe keys")
    stage = dict(stage)
    name = stage_name(stage)
    stage.pop("name", None)
    problem = name_problem(name)
    if problem:  # a stage's name is its directory's
        raise RecipeError(str(locate(origins, source, (*prefix, "name"))), dotted((*prefix, "name")), problem)
    for key in PIPELINE_STAGE_KEYS:
        stage.pop(key, None)  # pipeline keys, checked in _load_pipeline
    shared = {k: v for k, v in data.items() if k not in ("stages", *SEED_KEYS)}
    shared_origins = {p: o for p, o in origins.items() if p[:1] not in (("stages",), *((k,) for k in SEED_KEYS))}
    own_origins = {p[2:]: o for p, o in origins.items()
                   if p[:2] == prefix and len(p) > 2 and p[2] not in ("name", *PIPELINE_STAGE_KEYS)}
    merged = copy.deepcopy(merge(shared, stage))
    merged_origins = merge_origins(shared_origins, own_origins, stage)
    if seed is not None:  # one training run's randomness: the trainer's seed and a tiny model's init
        name = f"{name}-seed{seed}"
        merged["trainer"] = {**(merged.get("trainer") or {}), "seed": seed}
        model = merged.get("model")
        if isinstance(model, dict) and isinstance(model.get("tiny"), dict):
            model["tiny"] = {**model["tiny"], "seed": seed}
    # Every stage's run directory is under the pipeline's: run.dir/<pipeline>/<stage>/.
    merged["run"] = {**(merged.get("run") or {}), "dir": str(root), "name": name}
    try:
        return name, validate(merged, merged_origins, source)
    except RecipeError as exc:
        path = tuple(int(p) if p.isdigit() else p for p in exc.key.split(".")) if exc.key else ()
        from_stage = any(path[: len(k)] == k or k[: len(path)] == path for k in own_origins)
        key = dotted(prefix + path) if from_stage else exc.key
        raise RecipeError(exc.where, key, exc.message) from None


def stage_name(stage: dict) -> str:
    """A pipeline stage's name, as written: its `name`, else its method."""
    return str(stage.get("name") or stage.get("method"))


PIPELINE_STAGE_KEYS = ("instead_of", "budget")
SEED_KEYS = ("seeds", "seeds_from")  # top-level pipeline keys that are not recipe keys
BUDGET_CHOICES = (*BUDGETS, "none")


def _seeds(data: dict, origins, source: Path) -> list[int] | None:
    if "seeds" not in data:
        return None
    seeds = data["seeds"]
    if not (isinstance(seeds, list) and seeds and all(isinstance(x, int) and not isinstance(x, bool) for x in seeds)
            and len(set(seeds)) == len(seeds)):
        raise RecipeError(str(locate(origins, source, ("seeds",))), "seeds",
                          f"expected a list of distinct integers, e.g. [0, 1, 2] (got {seeds!r})")
    return seeds


def _load_pipeline(data: dict, origins, source: Path) -> Pipeline:
    where = str(locate(origins, source, ("stages",)))
    if "method" in data:
        raise RecipeError(where, "method", "a pipeline gives each stage its own method; remove the top-level one")
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise RecipeError(where, "stages", "expected a list of stages, e.g. [{method: sft, ...}, {method: dpo, ...}]")
    run = data.get("run") if isinstance(data.get("run"), dict) else {}
    name = run.get("name") or source.stem
    group = GroupDir(run_path(run.get("dir", "runs"), name))
    seeds = _seeds(data, origins, source)
    count, split = len(data["stages"]), _seeds_from(data, origins, source)
    if seeds is None:
        return Pipeline(source, name, _pipeline_stages(data, origins, source, group, None, range(count)), group, None)
    shared = _pipeline_stages(data, origins, source, group, None, range(split))
    stages = list(shared)
    for seed in seeds:
        stages += _pipeline_stages(data, origins, source, group, seed, range(split, count), shared)
    return Pipeline(source, name, stages, group, seeds)


def _seeds_from(data: dict, origins, source: Path) -> int:
    """The index of the first stage that runs once per seed (`seeds_from: <stage>`); the stages
    above it run once, with the pipeline's own seed, and every seed starts from them. 0 without it."""
    if "seeds_from" not in data:
        return 0
    names = [stage_name(s) if isinstance(s, dict) else None for s in data["stages"]]
    wanted = data["seeds_from"]
    if wanted not in names:
        raise RecipeError(str(locate(origins, source, ("seeds_from",))), "seeds_from",
                          f"{wanted!r} is not a stage of this pipeline (its stages: {', '.join(map(str, names))})"
                          f"{did_you_mean(wanted, [n for n in names if n])}; seeds_from names the first stage to run "
                          "once per seed")
    return names.index(wanted)


def _pipeline_stages(data: dict, origins, source: Path, group: GroupDir, seed: int | None, indices: range,
                     before: list[Stage] = ()) -> list[Stage]:
    """Stages `indices` of the pipeline for `seed` (None: run once), after the stages `before`
    (those run once and shared by every seed, under `seeds_from`)."""
    built = [(i, *_stage_recipe(data, origins, source, i, group.path, seed)) for i in indices]
    suffix = "" if seed is None else f"-seed{seed}"
    seen = [s.base for s in before]
    for i, stage_name, _ in built:  # the later of two stages of one name is the one named wrong
        base = stage_name.removesuffix(suffix)
        if base in seen:
            raise RecipeError(str(locate(origins, source, ("stages", i))), f"stages.{i}.name",
                              f"two stages are named '{base}'; give each a unique name")
        seen.append(base)
    stages: list[Stage] = list(before)
    previous = next((s.name for s in reversed(before) if s.instead_of is None), None)  # the last stage later stages build on
    for i, stage_name, recipe in built:
        raw = data["stages"][i]
        base = stage_name.removesuffix(suffix)
        target = raw.get("instead_of")
        if "budget" in raw and target is None:
            key = ("stages", i, "budget")
            raise RecipeError(str(locate(origins, source, key)), dotted(key),
                              "budget matches the stage a comparison stands in for; it needs instead_of")
        if target is None:
            stages.append(Stage(stage_name, recipe, starts_from=previous, seed=seed, base=base))
            previous = stage_name
            continue
        key = ("stages", i, "instead_of")
        earlier = [s.base for s in stages if s.instead_of is None]
        if target not in earlier:
            raise RecipeError(str(locate(origins, source, key)), dotted(key),
                              f"'{target}' is not an earlier stage (instead_of names a stage above this one "
                              f"that this stage is compared with: {', '.join(earlier) or 'none yet'})")
        budget = raw.get("budget", "flops")
        if budget not in BUDGET_CHOICES:
            key = ("stages", i, "budget")
            raise RecipeError(str(locate(origins, source, key)), dotted(key),
                              f"budget is {budget!r}; one of {', '.join(BUDGET_CHOICES)} (what of '{target}' this "
                              "stage gets: its estimated FLOPs, its trained tokens, its training seconds, or none)")
        replaced = next(s for s in stages if s.base == target)
        stages.append(Stage(stage_name, recipe, starts_from=replaced.starts_from, instead_of=replaced.name,
                            budget=None if budget == "none" else budget, seed=seed, base=base))
    return stages[len(before):]


# ----------------------------------------------------------------------------- experiments

EXPERIMENT_SHARED = ("model", "eval", "description")
VARIANTS = ("shortcut", "journey")


@dataclass
class Experiment(RecipeKind):
    """The journey-vs-shortcut experiment (posttrain/experiments/journey.py): SFT phase 1, trees
    sampled from the phase-1 model, then SFT phase 2 from it on shortcut and on journey traces for
    every seed. Phase 2's recipes are checked at load with procedural trees standing in for the
    sampled ones; `phase2(kind, seed, trees, model)` builds the real one once they exist."""

    source: Path
    spec: ExperimentSpec
    data: dict = field(repr=False)  # the recipe's data (after extends and overrides)
    origins: dict = field(repr=False)
    phase1: LoadedRecipe = field(repr=False)
    kind = "experiment"

    @property
    def name(self) -> str:
        return self.group.path.name

    @property
    def group(self) -> GroupDir:
        return _experiment_group(self.spec, self.source)

    @property
    def root(self) -> Path:
        return self.group.path

    @property
    def seeds(self) -> list[int]:
        return self.spec.seeds

    @property
    def trees(self):
        return self.spec.trees

    @property
    def traces(self) -> TracesSpec:
        """Phase 2's journey trace options (wording, detours), as the recipe gives them."""
        return TracesSpec(**{**self.spec.phase2.get("traces", {}), "kind": "journey"})

    @property
    def stages(self) -> list[Stage]:
        trees = self.group.trees if self.group.trees.is_file() else None
        phase1 = self.group.stage("phase1")
        model = phase1.final if phase1.finished else None
        why = None if trees else "procedural trees stand in for the trees sampled from phase 1"
        phase2 = [Stage(f"{kind}-seed{seed}", self.phase2(kind, seed, trees, model), starts_from="phase1",
                        stand_in=why) for seed in self.seeds for kind in VARIANTS]
        return [Stage("phase1", self.phase1), *phase2]

    def evaluation_stage(self, model_given: bool = False) -> Stage:
        if model_given:  # the shared eval block, as phase 1 holds it
            return self.stages[0]
        raise UserError(f"{self.source}: an experiment scores every one of its runs itself "
                        f"({self.group.comparison_markdown}); to score one of its models, pass --model, "
                        f"e.g. --model {self.group.stage('phase1').final}")

    def describe(self) -> str:
        return f"experiment {self.spec.experiment}, run {self.name}"

    def resolved(self, resolve) -> dict:  # the recipe as written, phase 1 resolved
        return {**self.data, "phase1 (resolved)": resolve(self.phase1)}

    def phase2(self, kind: str, seed: int, trees: Path | None, model: Path | None = None) -> LoadedRecipe:
        """Phase 2 on `kind` traces for `seed`, from `trees` (None: procedural stand-ins) and the
        phase-1 model at `model` (None: the shared model)."""
        return _validate_phase(_phase2_dict(self.data, self.root, kind, seed, trees, model),
                               self.origins, self.source, "phase2")


def _experiment_group(spec: ExperimentSpec, source: Path) -> GroupDir:
    return GroupDir(run_path(spec.run.dir, spec.run.name or source.stem))


def _phase_recipe(raw: dict, block: str, replace: dict | None = None) -> dict:
    """A plain SFT recipe dict for one phase: the shared keys, the block's own, then `replace`."""
    recipe = {"method": "sft", **{k: copy.deepcopy(raw[k]) for k in EXPERIMENT_SHARED if k in raw}}
    recipe.update(copy.deepcopy({k: v for k, v in raw[block].items() if k not in ("seeds", "traces")}))
    recipe.update(replace or {})
    return recipe


def _phase_origins(origins: dict, block: str) -> dict:
    shared = {p: o for p, o in origins.items() if p[:1] and p[0] in EXPERIMENT_SHARED}
    own = {p[1:]: o for p, o in origins.items() if p[:1] == (block,) and len(p) > 1}
    return {**shared, **own}


def _validate_phase(recipe: dict, origins: dict, source: Path, block: str) -> LoadedRecipe:
    try:
        return validate(recipe, _phase_origins(origins, block), source)
    except RecipeError as exc:  # name the key as it is written in the experiment
        shared = exc.key.split(".")[0] in EXPERIMENT_SHARED
        raise RecipeError(exc.where, exc.key if shared or not exc.key else f"{block}.{exc.key}", exc.message) from None


def _phase2_dict(data: dict, root: Path, kind: str, seed: int, trees: Path | None, model: Path | None) -> dict:
    traces = {**data["phase2"].get("traces", {}), "kind": kind, "seed": seed}
    if kind == "shortcut":
        traces = {"kind": "shortcut", "seed": seed}
    source = ({"path": str(Path(trees).resolve())} if trees else {"task": "arithmetic_trees", "n": 4}) | {"traces": traces}
    run = {**(data["phase2"].get("run") or {}), "name": f"{kind}-seed{seed}", "dir": str(root)}
    recipe = _phase_recipe(data, "phase2", {"data": {"train": [source]}, "run": run})
    recipe["trainer"] = {**recipe.get("trainer", {}), "seed": seed}
    if model is not None:
        recipe["model"] = {k: v for k, v in recipe["model"].items() if k not in ("tiny", "chat_template")}
        recipe["model"]["name_or_path"] = str(Path(model).resolve())
    if "eval" in recipe:
        recipe["eval"] = {**recipe["eval"], "baseline": False}
    return recipe


def _load_experiment(data: dict, origins, source: Path) -> Experiment:
    for block in ("phase1", "trees", "phase2"):
        if not isinstance(data.get(block), dict):
            raise RecipeError(str(locate(origins, source, (block,))), block, f"the experiment needs a {block}: block")
    if "eval" not in data:
        raise RecipeError(str(source), "eval", "the experiment compares held-out accuracy: add an eval block")
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise pydantic_error(ExperimentSpec, source, origins, exc) from None

    def error(path: KeyPath, message: str) -> RecipeError:
        return RecipeError(str(locate(origins, source, path)), dotted(path), message)

    seeds = spec.phase2.get("seeds", [0, 1, 2])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise error(("phase2", "seeds"), f"expected a non-empty list of integers, e.g. [0, 1, 2] (got {seeds!r})")
    check_judge(error, ("trees", "judge"), spec.trees.judge)
    if spec.trees.questions.task in TASKS:
        check_task_options(error, ("trees", "questions"), spec.trees.questions)
    if spec.trees.keep_unsolved:
        raise error(("trees", "keep_unsolved"), "shortcut and journey traces need a correct path; a tree without "
                    "one is dropped (keep_unsolved is for a prm source's step records)")
    check_reward(error, data, ("trees", "reward"), spec.trees.reward)
    root = _experiment_group(spec, source).path
    run = {**(data["phase1"].get("run") or {}), "name": "phase1", "dir": str(root)}
    phase1 = _validate_phase(_phase_recipe(data, "phase1", {"run": run}), origins, source, "phase1")
    experiment = Experiment(source, spec, data, origins, phase1)
    for kind in VARIANTS:  # phase 2 checked now, with procedural trees standing in for the sampled ones
        experiment.phase2(kind, experiment.seeds[0], trees=None)
    return experiment


# ----------------------------------------------------------------------------- loading


def load_recipe(path, overrides=()) -> SingleRun | Pipeline | Experiment:
    """Load, merge, override and validate a recipe file of any kind. Raises RecipeError on any
    problem, naming the file, line and key."""
    source = Path(path)
    data, origins = read_recipe(source, overrides)
    if "stages" in data:
        return _load_pipeline(data, origins, source.resolve())
    if "experiment" in data:
        return _load_experiment(data, origins, source.resolve())
    return SingleRun(validate(data, origins, source.resolve()))
