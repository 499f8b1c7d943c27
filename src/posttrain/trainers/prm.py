"""Process reward models (`method: prm`): a causal LM with a token-classification head, trained to
say, for each step of a solution, whether that step is correct. TRL 1.16 has no PRM trainer any
more, so this is posttrain's own, on transformers' Trainer, and it does what TRL's former
PRMTrainer did: each step is written followed by `step_separator`, and the step's label sits on
the separator's last token; every other token is ignored by the loss (label -100).

    posttrain run recipes/quickstart/prm.yaml

Records are step-labelled (`prompt`, `completions`: the steps, `labels`: one true/false per
step): TRL's stepwise-supervision format, PRM800K and Math-Shepherd rows (data/shapes.py), and
reasoning trees (`traces: {kind: steps}`: every root-to-leaf path, each step labelled by its
rating). LoRA through `peft:` (peft's TOKEN_CLS task: the head trains with it).

With `trainer.head: causal_lm` the model stays a causal LM and learns to write
`positive_token` (default `+`) or `negative_token` (`-`) at each label position, as
Math-Shepherd's released PRMs and OpenRLHF's PRM trainer do: the loss is the cross-entropy of the
two tokens' logits there (the LM head restricted to them), and a step's score is the softmax
probability of the positive one. final/ then records the two tokens in prm.json, which
`reward_model` and search read.

After training, final/ rates the steps of the held-out records, per `data.eval` source (or the
records held out of the training mixture): step accuracy, precision / recall / F1 of finding
the incorrect steps, and ProcessBench's first-wrong-step measure (the share of solutions with an
error whose first wrong step is found exactly, the share of all-correct solutions judged all
correct, and their harmonic mean), written to eval/report.json and eval/report.md.
"""

from __future__ import annotations

import json
import math
import time

from posttrain.data.loading import (build_mixture, decontamination, drop_long_prompts, held_out, rows_rendering,
                                    to_dataset)
from posttrain.recipe import LoadedRecipe
from posttrain.rewards.model_reward import PRM_HEAD_FILE, candidate_ids, encode, step_scores
from posttrain.rundir import EvalDir, is_main_process, write_atomic
from posttrain.errors import UserError
from posttrain.trainers import common
from posttrain.trainers.skeleton import Context, TrainData

HELD_OUT = "held out of data.train"
IGNORE = -100


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {"remove_unused_columns": False}  # the datasets hold exactly input_ids and labels


def lengths(args: dict) -> dict:
    """The tokenisation options of a PRM run's trainer arguments (PRMConfig's defaults)."""
    return {"separator": args.get("step_separator", "\n"), "max_length": args.get("max_length", 1024),
            "max_prompt_length": args.get("max_prompt_length", 512),
            "max_completion_length": args.get("max_completion_length"), "tag": args.get("step_tag")}


def training_example(tokenizer, record: dict, options: dict, last_step_only: bool) -> dict | None:
    ids, positions = encode(tokenizer, record["prompt"], record["completions"], **options)
    if not positions:
        return None  # the prompt alone fills max_length: no step left to learn from
    labels = [IGNORE] * len(ids)
    kept = list(zip(positions, record["labels"]))
    for position, label in (kept[-1:] if last_step_only else kept):
        labels[position] = int(label)
    return {"input_ids": ids, "labels": labels}


def _examples(context: Context, records: list[dict]) -> tuple[list[dict], int]:
    options = lengths(context.args)
    last_only = context.args.get("train_on_last_step_only", False)
    examples = [training_example(context.tokenizer, r, options, last_only) for r in records]
    kept = [e for e in examples if e is not None]
    return kept, len(examples) - len(kept)


def tree_builder(context: Context):
    """`build_trees:` sources: reasoning trees sampled from the model this run starts from (a
    causal LM; the PRM is a token classifier made from it), rated as `posttrain data
    build-trees` rates them; written to the run's trees/ directory."""
    sampled = []

    def build(source, tasks: list[dict]) -> list[dict]:
        from posttrain.data.build_trees import build_trees
        from posttrain.data.onpolicy import agree_across_ranks

        spec = source.build_trees
        started = time.monotonic()
        tasks, _ = drop_long_prompts(tasks, context.tokenizer, context.loaded.spec.data.max_prompt_length, source.label)
        with rows_rendering(context.tokenizer, tasks, source.label):  # the trees are sampled in the rows' mode
            trees, stats = build_trees(common.starting_policy(context), context.tokenizer, tasks,
                                       **spec.model_dump(exclude={"reward", "judge"}), reward=spec.reward,
                                       judge=spec.judge)
        trees, stats = agree_across_ranks((trees, dict(stats)))  # every rank trains on rank 0's trees
        path = context.run.sampled_trees(len(sampled))
        if is_main_process():
            path.parent.mkdir(exist_ok=True)
            write_atomic(path, "".join(json.dumps(t) + "\n" for t in trees))
        sampled.append(source.label)
        context.extra.setdefault("sampled_trees", {})[source.label] = {**stats, "file": path.name,
                                                                        "seconds": round(time.monotonic() - started, 1)}
        unsolved = (f"{stats.get('kept: no correct path', 0)} of them without a correct path" if spec.keep_unsolved else
                    f"{stats.get('dropped: no correct path', 0)} of {stats['questions']} questions without a correct "
                    "path dropped")
        print(f"posttrain: {source.label}: {stats['trees']} trees sampled from the starting model ({unsolved}); "
              f"{stats['incorrect steps']} of {stats['steps']} steps incorrect; in {path}")
        return trees

    return build


def data(context: Context) -> TrainData:
    loaded = context.loaded
    candidates_of(context.tokenizer, context.args)  # one token each, before anything is sampled or trained
    builder = tree_builder(context)
    records, sources = build_mixture(loaded.spec.data.train, context.data_kind, context.data_seed,
                                     decontamination(loaded.spec, context.data_kind), tree_builder=builder)
    records, evaluation, eval_sources = held_out(loaded.spec.data, records, context.data_kind, context.data_seed,
                                                 tree_builder=builder)
    context.extra.pop("policy", None)  # sampling is over: free the causal LM
    train, dropped = _examples(context, records)
    if not train:
        raise UserError(f"{loaded.source}: data.train: every record's prompt fills trainer.max_length "
                               f"({context.args.get('max_length', 1024)}); no step is left to train on")
    steps = sum(len(r["labels"]) for r in records)
    wrong = sum(not x for r in records for x in r["labels"])
    print(f"posttrain: {len(train)} step-labelled solutions, {steps} steps ({wrong} incorrect)"
          + (f"; {dropped} dropped: the prompt alone fills max_length" if dropped else ""))
    groups: dict[str, list[dict]] = {}
    if loaded.spec.data.eval:  # each evaluation source on its own (held_out read them already)
        groups = {item.label: item.records for item in eval_sources}
    elif evaluation is not None:
        groups[HELD_OUT] = evaluation
    context.extra["eval_groups"] = groups
    eval_examples = _examples(context, evaluation)[0] if evaluation else None
    fingerprints = common.source_records(sources + eval_sources)
    fingerprints.update(steps=steps, incorrect_steps=wrong, dropped_records=dropped)
    if context.extra.get("sampled_trees"):
        fingerprints["sampled_trees"] = context.extra["sampled_trees"]
    return TrainData(to_dataset(train), eval_examples and to_dataset(eval_examples), fingerprints)


def disable_dropout(model) -> int:
    """Every dropout layer's p set to 0 (trainer.disable_dropout, on by default as TRL's former
    PRMConfig had it); returns how many layers had a nonzero one."""
    import torch

    changed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p:
            module.p, changed = 0.0, changed + 1
    for config in {id(c): c for c in [getattr(model, "config", None)] if c is not None}.values():
        for key in ("attention_dropout", "hidden_dropout", "classifier_dropout", "dropout", "attention_probs_dropout_prob",
                    "hidden_dropout_prob"):
            if isinstance(getattr(config, key, None), float) and getattr(config, key):
                setattr(config, key, 0.0)
                changed += 1
    return changed


def candidates_of(tokenizer, args) -> list[int] | None:
    """[negative, positive] token ids for head causal_lm (None for the classifier head)."""
    get = args.get if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))
    if get("head", "token_classification") != "causal_lm":
        return None
    try:
        return candidate_ids(tokenizer, negative=get("negative_token", "-"), positive=get("positive_token", "+"))
    except ValueError as exc:
        raise UserError(f"trainer: {exc}") from None


def two_token_loss(logits, labels, candidates: list[int]):
    """Cross-entropy of the [negative, positive] tokens' logits at every labelled position
    (label 1: correct, the positive token), the mean over labelled positions: OpenRLHF's PRM loss."""
    import torch

    picked = logits[..., candidates].float()
    return torch.nn.functional.cross_entropy(picked.reshape(-1, 2), labels.reshape(-1), ignore_index=IGNORE)


def lm_head_trainer_class():
    from transformers import Trainer

    class TwoTokenPRMTrainer(Trainer):
        """transformers' Trainer with the causal-LM PRM loss (two_token_loss)."""

        candidates: list[int] = []

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = two_token_loss(outputs.logits, labels, self.candidates)
            return (loss, outputs) if return_outputs else loss

    return TwoTokenPRMTrainer


def build(context: Context, config, data: TrainData, callbacks: list):
    from transformers import DataCollatorForTokenClassification, Trainer

    model = context.model
    if config.disable_dropout:
        disable_dropout(model)
    if context.peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, context.peft_config)
    candidates = candidates_of(context.tokenizer, config)
    trainer_class = Trainer
    if candidates is not None:
        trainer_class = lm_head_trainer_class()
        trainer_class.candidates = candidates
        print(f"posttrain: the causal LM learns {config.positive_token!r} / {config.negative_token!r} at each step's "
              f"label token (tokens {candidates[1]} / {candidates[0]})")
    return trainer_class(model=model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                   data_collator=DataCollatorForTokenClassification(context.tokenizer, label_pad_token_id=IGNORE),
                   processing_class=context.tokenizer, callbacks=callbacks)


def first_wrong(labels: list[bool]) -> int:
    """The index of the first incorrect step, -1 when every step is correct (ProcessBench)."""
    return next((i for i, label in enumerate(labels) if not label), -1)


def _f1(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def step_metrics(truth: list[list[bool]], predicted: list[list[bool]]) -> dict:
    """Step accuracy, finding incorrect steps (precision, recall, F1), and ProcessBench's
    first-wrong-step accuracy on erroneous and on all-correct solutions and their harmonic mean."""
    pairs = [(t, p) for ts, ps in zip(truth, predicted) for t, p in zip(ts, ps)]
    found = sum(not t and not p for t, p in pairs)
    flagged = sum(not p for _, p in pairs)
    wrong = sum(not t for t, _ in pairs)
    precision = found / flagged if flagged else None
    recall = found / wrong if wrong else None
    erroneous = [(first_wrong(t), first_wrong(p)) for t, p in zip(truth, predicted) if first_wrong(t) >= 0]
    correct = [first_wrong(p) == -1 for t, p in zip(truth, predicted) if first_wrong(t) < 0]
    error_accuracy = sum(a == b for a, b in erroneous) / len(erroneous) if erroneous else None
    correct_accuracy = sum(correct) / len(correct) if correct else None
    return {"solutions": len(truth), "steps": len(pairs), "incorrect_steps": wrong,
            "step_accuracy": sum(t == p for t, p in pairs) / len(pairs) if pairs else None,
            "incorrect_precision": precision, "incorrect_recall": recall, "incorrect_f1": _f1(precision, recall),
            "first_wrong_step": {"erroneous_solutions": len(erroneous), "erroneous_accuracy": error_accuracy,
                                 "correct_solutions": len(correct), "correct_accuracy": correct_accuracy,
                                 "f1": _f1(error_accuracy, correct_accuracy)}}


def evaluate_steps(model, tokenizer, groups: dict[str, list[dict]], options: dict, threshold: float,
                   candidates: list[int] | None = None) -> dict:
    report = {}
    for label, records in groups.items():
        if not records:
            continue
        scores = step_scores(model, tokenizer, records, options, candidates=candidates)
        truth = [list(r["labels"][: len(s)]) for r, s in zip(records, scores)]
        predicted = [[p >= threshold for p in s] for s in scores]
        report[label] = step_metrics(truth, predicted)
    return report


def _percent(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"


def after_training(context: Context, trainer) -> dict:
    """Rate the held-out records' steps with final/, the model the run leaves; eval/report.*."""
    candidates = candidates_of(context.tokenizer, context.args)
    if candidates is not None and trainer.is_world_process_zero():  # reward_model and search read it
        write_atomic(context.run.final / PRM_HEAD_FILE, json.dumps(
            {"head": "causal_lm", "positive_token": context.args.get("positive_token", "+"),
             "negative_token": context.args.get("negative_token", "-"),
             "step_separator": context.args.get("step_separator", "\n"),
             "step_tag": context.args.get("step_tag")}) + "\n")
    groups = context.extra.get("eval_groups") or {}
    if not groups or not trainer.is_world_process_zero():
        return {}
    model = common.load_model(context.loaded, str(context.run.final), context.device)
    if context.device.cuda:
        model = model.to("cuda")
    model.eval()
    report = evaluate_steps(model, context.tokenizer, groups, lengths(context.args), context.args.get("threshold", 0.5),
                            candidates)
    outputs = EvalDir(context.run.eval_dir)
    outputs.path.mkdir(exist_ok=True)
    write_atomic(outputs.report, json.dumps({"process_reward": report}, indent=2) + "\n")
    lines = ["| steps from | solutions | steps | step accuracy | incorrect-step F1 | first wrong step: erroneous "
             "| first wrong step: correct | ProcessBench F1 |", "|---|---|---|---|---|---|---|---|"]
    for label, r in report.items():
        first = r["first_wrong_step"]
        lines.append(f"| {label} | {r['solutions']} | {r['steps']} | {_percent(r['step_accuracy'])} | "
                     f"{_percent(r['incorrect_f1'])} | {_percent(first['erroneous_accuracy'])} | "
                     f"{_percent(first['correct_accuracy'])} | {_percent(first['f1'])} |")
        print(f"posttrain: process reward model on {label}: step accuracy {_percent(r['step_accuracy'])} "
              f"({r['steps']} steps), incorrect-step F1 {_percent(r['incorrect_f1'])}, first wrong step "
              f"{_percent(first['erroneous_accuracy'])} of {first['erroneous_solutions']} erroneous solutions")
    write_atomic(outputs.report_markdown, "\n".join(lines) + "\n")
    return {f"eval/step_accuracy/{label}": r["step_accuracy"] for label, r in report.items()}
