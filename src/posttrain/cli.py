"""posttrain's command line: thin wrappers over recipe.py, runs.py and data/.

    posttrain validate RECIPE...             check recipes without loading anything heavy
    posttrain show RECIPE [key=value ...]    print the resolved recipe
    posttrain run RECIPE [key=value ...] [--resume | --overwrite]
    posttrain launch RECIPE [key=value ...] [--dry-run]
    posttrain launch RECIPE --slurm [--dry-run]
    posttrain consolidate CHECKPOINT OUTPUT
    posttrain plan RECIPE [key=value ...] [--seq-len N] [--gpu-memory GIB]
    posttrain eval RECIPE [key=value ...] [--model DIR] [--output DIR]
    posttrain data generate TASK --n N [--split train|heldout] [--seed S] [-o FILE]
    posttrain data build-trees RECIPE [key=value ...] -o FILE [--model DIR] [--width W] [--depth D] [--beam K]
    posttrain data decontaminate RECIPE [key=value ...] [--n N] [--threshold T] [--write DIR]
"""

from __future__ import annotations

import argparse
import json
import sys

from posttrain.errors import UserError

EXIT_USER_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posttrain", description="YAML recipes for SFT, DPO and RLVR on TRL.")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check recipes; nothing heavy is loaded")
    validate.add_argument("recipes", nargs="+")

    show = commands.add_parser("show", help="print the resolved recipe")
    show.add_argument("recipe")
    show.add_argument("overrides", nargs="*", metavar="key.path=value")

    run = commands.add_parser("run", help="train (and evaluate) as the recipe says")
    run.add_argument("recipe")
    run.add_argument("overrides", nargs="*", metavar="key.path=value")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run directory")

    launch = commands.add_parser("launch", help="render (and run) the command for the recipe's launch block")
    launch.add_argument("recipe")
    launch.add_argument("overrides", nargs="*", metavar="key.path=value")
    launch.add_argument("--dry-run", action="store_true", help="print the command (or write the job script), "
                        "do not run (or submit) it")
    launch.add_argument("--slurm", action="store_true", help="write an sbatch job script for the launch block "
                        "and submit it with sbatch")

    consolidate = commands.add_parser("consolidate", help="a DeepSpeed ZeRO checkpoint into a normal model directory")
    consolidate.add_argument("checkpoint", help="checkpoints/checkpoint-N of a ZeRO run")
    consolidate.add_argument("output", help="model directory to write")

    plan = commands.add_parser("plan", help="per-GPU memory under each ZeRO stage, and a recommendation")
    plan.add_argument("recipe")
    plan.add_argument("overrides", nargs="*", metavar="key.path=value")
    plan.add_argument("--seq-len", type=int, help="tokens per sequence (default: trainer.max_length, else 1024)")
    plan.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU (default 80)")

    evaluate = commands.add_parser("eval", help="score a model as the recipe's eval block says")
    evaluate.add_argument("recipe")
    evaluate.add_argument("overrides", nargs="*", metavar="key.path=value")
    evaluate.add_argument("--model", help="model directory (default: the run's final/; 'tiny': untrained)")
    evaluate.add_argument("--output", help="report directory (default: the run's eval/)")

    data = commands.add_parser("data", help="data tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    decon = data_commands.add_parser(
        "decontaminate", help="count (and with --write, drop) training records overlapping the eval sets")
    decon.add_argument("recipe")
    decon.add_argument("overrides", nargs="*", metavar="key.path=value")
    decon.add_argument("--n", type=int, help="words per n-gram (default: the recipe's, else 8)")
    decon.add_argument("--threshold", type=float, help="share of an eval record's n-grams (default 0.5)")
    decon.add_argument("--write", metavar="DIR", help="write each source's clean records to DIR/*.jsonl")
    trees = data_commands.add_parser(
        "build-trees", help="reasoning trees sampled from a model for the recipe's task records (docs/trees.md)")
    trees.add_argument("recipe")
    trees.add_argument("overrides", nargs="*", metavar="key.path=value")
    trees.add_argument("-o", "--output", required=True, help="JSONL file of trees to write")
    trees.add_argument("--model", help="model directory (default: the recipe's model)")
    trees.add_argument("--width", type=int, default=4, help="candidate next steps sampled per node (default 4)")
    trees.add_argument("--depth", type=int, default=8, help="at most this many steps (default 8)")
    trees.add_argument("--beam", type=int, default=2, help="nodes per question kept for expansion (default 2)")
    trees.add_argument("--temperature", type=float, default=1.0)
    trees.add_argument("--step-tokens", type=int, default=32, help="tokens sampled per step (default 32)")
    trees.add_argument("--reward", default="verifier", help="rates final answers (default: the record's verifier)")
    trees.add_argument("--judge", help="step checker: 'arithmetic' or a dotted path module:function")
    trees.add_argument("--seed", type=int, default=0)
    gen = data_commands.add_parser("generate", help="write generated task records as JSONL")
    gen.add_argument("task")
    gen.add_argument("--n", type=int, required=True)
    gen.add_argument("--split", choices=["train", "heldout"], default="train")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("-o", "--output", help="file to write (default: standard output)")
    return parser


def _validate(args) -> int:
    from posttrain.experiments.journey import JourneyExperiment
    from posttrain.recipe import Pipeline, load_recipe

    failed = 0
    for path in args.recipes:
        try:
            loaded = load_recipe(path)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
        else:
            if isinstance(loaded, Pipeline):
                stages = ", ".join(f"{name} ({stage.spec.method}"
                                   + (f", instead of {loaded.instead_of[name]})" if name in loaded.instead_of else ")")
                                   for name, stage in loaded.stages)
                print(f"ok: {path} (pipeline {loaded.name}: {stages})")
            elif isinstance(loaded, JourneyExperiment):
                print(f"ok: {path} (experiment {loaded.data['experiment']}, run {loaded.name})")
            else:
                print(f"ok: {path} ({loaded.spec.method}, run {loaded.run_name})")
    return EXIT_USER_ERROR if failed else 0


def _show(args) -> int:
    from posttrain.experiments.journey import JourneyExperiment
    from posttrain.recipe import Device, Pipeline, load_recipe, resolved_dict, to_yaml

    loaded = load_recipe(args.recipe, args.overrides)
    device = Device.detect()
    if isinstance(loaded, Pipeline):
        stages = {name: resolved_dict(stage, device) for name, stage in loaded.stages}
        print(to_yaml({"pipeline": loaded.name, "stages": stages}), end="")
    elif isinstance(loaded, JourneyExperiment):  # its recipe as written, phase 1 resolved
        print(to_yaml({**loaded.data, "phase1 (resolved)": resolved_dict(loaded.phase1, device)}), end="")
    else:
        print(to_yaml(resolved_dict(loaded, device)), end="")
    return 0


def _run(args) -> int:
    from posttrain.trainers.faults import STOP

    STOP.install()  # before the slow imports: a stop signal at start-up still ends in a checkpoint
    from posttrain.experiments.journey import JourneyExperiment
    from posttrain.recipe import Pipeline, load_recipe
    from posttrain.runs import run_pipeline, run_recipe

    loaded = load_recipe(args.recipe, args.overrides)
    if isinstance(loaded, JourneyExperiment):
        from posttrain.experiments.journey import run_experiment

        if args.overwrite and loaded.root.exists():
            import shutil

            shutil.rmtree(loaded.root)
        run_experiment(loaded)  # finished runs are reused, interrupted ones resume
    elif isinstance(loaded, Pipeline):
        run_pipeline(loaded, overwrite=args.overwrite)  # finished stages skip, interrupted ones resume
    else:
        run_recipe(loaded, resume=args.resume, overwrite=args.overwrite)
    return 0


def _launch(args) -> int:
    import os
    import shlex
    import subprocess

    from posttrain.launch.render import render_command
    from posttrain.recipe import Device, Pipeline, load_recipe, trainer_arguments

    loaded = load_recipe(args.recipe, args.overrides)
    stage = loaded.stages[0][1] if isinstance(loaded, Pipeline) else loaded
    launch = stage.spec.launch
    device = Device.detect()
    if args.slurm:  # the compute nodes' device, not this login node's
        device = Device(cuda=launch.slurm.gpus, bf16=launch.slurm.gpus)
    device = Device(device.cuda, device.bf16, world_size=launch.nodes * launch.gpus_per_node)
    if args.slurm:
        return _launch_slurm(args, loaded, stage, trainer_arguments(stage, device))
    argv = render_command(stage, args.recipe, args.overrides, trainer_arguments(stage, device))
    print(shlex.join(argv))
    if args.dry_run:
        return 0
    if launch.nodes > 1 and not (os.environ.get("MASTER_ADDR") and os.environ.get("NODE_RANK")):
        raise UserError("a multi-node launch needs MASTER_ADDR and NODE_RANK in the environment on every "
                        "node (a SLURM job script sets them); or use --dry-run to print the command")
    return subprocess.run([os.path.expandvars(a) for a in argv]).returncode


def _launch_slurm(args, loaded, stage, trainer_args) -> int:
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from posttrain.launch.slurm import render_sbatch
    from posttrain.recipe import Pipeline

    if isinstance(loaded, Pipeline):
        from posttrain.runs import place_stages

        run_dir = place_stages(loaded)
    else:
        run_dir = Path(stage.spec.run.dir) / stage.run_name
    spec = stage.spec.launch.slurm
    script = Path(spec.script) if spec.script else run_dir / "slurm" / "job.sbatch"
    text = render_sbatch(stage, args.recipe, args.overrides, trainer_args, run_dir.resolve(), sys.executable)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not create the log's directory
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(text)
    except OSError as exc:
        raise UserError(f"{script}: cannot write the job script: {exc.strerror or exc}") from None
    print(f"posttrain: wrote {script}")
    if args.dry_run:
        print(text)
        return 0
    if shutil.which("sbatch") is None:
        raise UserError(f"sbatch is not installed here; submit {script} on a SLURM login node")
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"sbatch rejected {script}: {done.stderr.strip()}")
    job = re.split(r"[;\s]", done.stdout.strip())[0]
    print(f"posttrain: submitted job {job}; log: {run_dir.resolve()}/slurm-{job}.out")
    return 0


def _plan(args) -> int:
    from posttrain.launch.plan import model_size, plan
    from posttrain.recipe import Pipeline, load_recipe

    loaded = load_recipe(args.recipe, args.overrides)
    stage = loaded.stages[0][1] if isinstance(loaded, Pipeline) else loaded
    spec = stage.spec
    if spec.model.name_or_path == "tiny":
        from posttrain.tiny import tiny_config

        config = tiny_config(spec.model.tiny)
    else:
        from posttrain.hub import go_offline_if_unreachable

        go_offline_if_unreachable()
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(spec.model.name_or_path, revision=spec.model.revision,
                                                trust_remote_code=spec.model.trust_remote_code)
        except OSError as exc:
            raise stage.error(("model", "name_or_path"), f"cannot read the model's config: {exc}") from None
    gpus = spec.launch.nodes * spec.launch.gpus_per_node
    sequence = args.seq_len or spec.trainer.get("max_length") or 1024
    checkpointing = spec.trainer.get("activation_checkpointing", spec.trainer.get("gradient_checkpointing", True))
    result = plan(model_size(config), gpus, spec.batch.per_device, sequence, bool(checkpointing), args.gpu_memory)
    print(f"{spec.model.name_or_path}: {result['parameters'] / 1e9:.3f} B parameters; {gpus} GPUs, "
          f"per-device batch {spec.batch.per_device}, sequence {sequence}, "
          f"activation checkpointing {'on' if checkpointing else 'off'}")
    print("| option | model states GiB/GPU | activations GiB/GPU | total GiB/GPU |\n|---|---|---|---|")
    for row in result["rows"]:
        print(f"| {row['option']} | {row['model_states_gib']:.2f} | {row['activations_gib']:.2f} | {row['total_gib']:.2f} |")
    recommended = result["recommended"]
    print(f"recommended with {args.gpu_memory:g} GiB GPUs: " + (recommended or "nothing fits; add GPUs or shorten sequences"))
    return 0


def _eval(args) -> int:
    from posttrain.recipe import Pipeline, load_recipe
    from posttrain.runs import evaluate_recipe, place_stages

    loaded = load_recipe(args.recipe, args.overrides)
    if isinstance(loaded, Pipeline):  # the last stage's model (not a comparison's), scored as that stage says
        place_stages(loaded)
        loaded = [stage for name, stage in loaded.stages if name not in loaded.instead_of][-1]
    evaluate_recipe(loaded, args.model, args.output)
    return 0


def _decontaminate(args) -> int:
    import re
    from pathlib import Path

    from posttrain.data.decontaminate import DEFAULT_N, DEFAULT_THRESHOLD, contaminated, eval_index
    from posttrain.data.loading import load_source
    from posttrain.recipe import Pipeline, load_recipe

    loaded = load_recipe(args.recipe, args.overrides)
    if isinstance(loaded, Pipeline):
        raise UserError(f"{args.recipe}: a pipeline; decontaminate each stage's data from a recipe of its own")
    spec = loaded.spec.data.decontaminate
    n = args.n or (spec.n if spec else DEFAULT_N)
    threshold = args.threshold or (spec.threshold if spec else DEFAULT_THRESHOLD)
    if not (loaded.spec.data.eval or loaded.spec.eval):
        raise loaded.error(("eval",), "the recipe has no evaluation set (data.eval or an eval block)")
    index = eval_index(loaded, n)
    print(f"{len(index.sizes)} evaluation records; {n}-grams, threshold {threshold}")
    print("| source | records | contaminated |\n|---|---|---|")
    for source in loaded.spec.data.train:
        records = load_source(source, "sft").records
        flagged = set(contaminated(records, index, threshold))
        print(f"| {source.label} | {len(records)} | {len(flagged)} |")
        if args.write:
            out = Path(args.write) / (re.sub(r"[^\w.-]+", "_", source.label).strip("_") + ".jsonl")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(records) if i not in flagged))
    return 0


def _build_trees(args) -> int:
    from pathlib import Path

    from posttrain.data.build_trees import build_trees
    from posttrain.data.loading import load_source
    from posttrain.recipe import Device, Pipeline, load_recipe
    from posttrain.trainers.common import load_model_and_tokenizer, write_atomic

    loaded = load_recipe(args.recipe, args.overrides)
    if isinstance(loaded, Pipeline):
        raise UserError(f"{args.recipe}: a pipeline; name a recipe whose data.train holds the task records")
    records = [r for source in loaded.spec.data.train for r in load_source(source, "task").records]
    device = Device.detect()
    model, tokenizer = load_model_and_tokenizer(loaded, device, path=args.model, preflight=False)
    if device.cuda:
        model = model.to("cuda")
    try:
        trees, stats = build_trees(model, tokenizer, records, width=args.width, depth=args.depth, beam=args.beam,
                                   temperature=args.temperature, step_tokens=args.step_tokens, reward=args.reward,
                                   judge=args.judge, seed=args.seed)
    except LookupError as exc:
        raise UserError(f"--judge/--reward: {exc}") from None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, "".join(json.dumps(t) + "\n" for t in trees))
    print(f"posttrain: {stats['trees']} trees from {stats['questions']} questions "
          f"({stats['dropped: no correct path']} without a correct path dropped); {stats['steps']} steps, "
          f"{stats['incorrect steps']} incorrect; wrote {output}")
    return 0


def _data(args) -> int:
    from posttrain.data.tasks import TASKS, generate

    if args.data_command == "decontaminate":
        return _decontaminate(args)
    if args.data_command == "build-trees":
        return _build_trees(args)

    if args.task not in TASKS:
        raise UserError(f"unknown task {args.task!r} (tasks: {', '.join(TASKS)})")
    lines = "".join(json.dumps(r) + "\n" for r in generate(args.task, args.n, args.split, args.seed))
    if args.output:
        from pathlib import Path

        Path(args.output).write_text(lines, encoding="utf-8")
    else:
        sys.stdout.write(lines)
    return 0


def _consolidate(args) -> int:
    from pathlib import Path

    from posttrain.launch.consolidate import consolidate

    out = consolidate(Path(args.checkpoint), Path(args.output))
    print(f"posttrain: wrote {out}")
    return 0


COMMANDS = {"validate": _validate, "show": _show, "run": _run, "launch": _launch, "plan": _plan,
            "consolidate": _consolidate,
            "eval": _eval, "data": _data}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        from posttrain.trainers.faults import EXIT_INTERRUPTED, Interrupted

        if not isinstance(exc, Interrupted):
            raise
        print(f"posttrain: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("posttrain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
