"""Reward models over TRL's RewardTrainer: a sequence classifier with one output, trained with the
Bradley-Terry loss to score the chosen answer of a pair above the rejected one; LoRA through
`peft:` (the score head trains with it). Every RewardConfig option is a `trainer:` key
(`center_rewards_coefficient`, `max_length`, ...).

    posttrain run recipes/quickstart/reward.yaml

Pairs come from anything DPO reads: files and hub shapes ({prompt, chosen, rejected}, text or
messages, UltraFeedback's conversations), reasoning trees (`traces: {kind: pairs}`). Unusable
pairs are dropped (or, with `data.overlong: truncate`, truncated) and counted as for DPO. After
training, final/ (the merged model) scores the held-out pairs: pairwise accuracy (chosen scored
above rejected) per `data.eval` source, or for the pairs held out of the training mixture
(`eval_fraction` / `eval_size`), written to eval/report.json and eval/report.md. The order of a
run is trainers/skeleton.py's.
"""

from __future__ import annotations

import json

from posttrain.data.loading import build_mixture, decontamination, held_out, to_dataset
from posttrain.recipe import LoadedRecipe
from posttrain.rewards.model_reward import sequence_scores, sequence_text
from posttrain.rundir import EvalDir, write_atomic
from posttrain.trainers import common
from posttrain.trainers.dpo import training_pairs, usable_pairs
from posttrain.trainers.skeleton import Context, TrainData

HELD_OUT = "held out of data.train"


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {}


def data(context: Context) -> TrainData:
    """Pairs from every source; on-policy ones (`on_policy:` on a task source) sampled from the
    causal LM the run starts from, scored by their reward, as DPO samples them."""
    from posttrain.data.loading import drop_long_prompts
    from posttrain.data.onpolicy import agree_across_ranks, sample_pairs

    loaded, tokenizer = context.loaded, context.tokenizer
    sampled: dict = {}

    def pair_sampler(source, tasks):
        tasks, _ = drop_long_prompts(tasks, tokenizer, loaded.spec.data.max_prompt_length, source.label)
        pairs, stats = sample_pairs(common.starting_policy(context), tokenizer, tasks, source.on_policy)
        pairs, stats = agree_across_ranks((pairs, stats))
        sampled[source.label] = dict(stats)
        print(f"posttrain: on-policy pairs from {source.label}: {stats['pairs']} pairs from {stats['prompts']} "
              f"prompts x {source.on_policy.samples} samples of the starting model")
        return pairs

    records, sources = build_mixture(loaded.spec.data.train, context.data_kind, context.data_seed,
                                     decontamination(loaded.spec, context.data_kind), pair_sampler=pair_sampler)
    context.extra.pop("policy", None)  # sampling is over: free the causal LM
    records, evaluation, eval_sources = held_out(loaded.spec.data, records, context.data_kind, context.data_seed)
    records, evaluation, dropped, truncated = training_pairs(context, records, evaluation)
    max_length, overlong = context.args.get("max_length", 1024), loaded.spec.data.overlong
    groups: dict[str, list[dict]] = {}
    if loaded.spec.data.eval:  # each evaluation source on its own, for accuracy per source
        for item in eval_sources:  # held_out read them already
            groups[item.label] = usable_pairs(item.records, tokenizer, max_length, overlong)[0]
    elif evaluation is not None:
        groups[HELD_OUT] = evaluation
    fingerprints = common.source_records(sources + eval_sources)
    fingerprints.update(dropped_pairs=dict(dropped), truncated_pairs=truncated)
    if sampled:
        fingerprints["on_policy"] = sampled
    context.extra["eval_groups"] = groups
    return TrainData(to_dataset(records), evaluation and to_dataset(evaluation), fingerprints)


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import RewardTrainer

    return RewardTrainer(model=context.model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                         processing_class=context.tokenizer, peft_config=context.peft_config, callbacks=callbacks)


def score_pairs(model, tokenizer, pairs: list[dict], max_length: int | None, batch_size: int = 16) -> list[float]:
    """chosen score minus rejected score for each pair, by a sequence classifier with one output."""
    texts = [sequence_text(tokenizer, p.get("prompt"), p[side]) for p in pairs for side in ("chosen", "rejected")]
    scores = sequence_scores(model, tokenizer, texts, max_length, batch_size)
    return [scores[i] - scores[i + 1] for i in range(0, len(scores), 2)]


def pairwise_accuracy(model, tokenizer, groups: dict[str, list[dict]], max_length: int | None) -> dict:
    report = {}
    for label, pairs in groups.items():
        if not pairs:
            continue
        margins = score_pairs(model, tokenizer, pairs, max_length)
        correct = sum(m > 0 for m in margins)
        report[label] = {"pairs": len(pairs), "correct": correct, "accuracy": correct / len(pairs),
                         "mean_margin": sum(margins) / len(margins)}
    return report


def after_training(context: Context, trainer) -> dict:
    """Score the held-out pairs with final/, the model the run leaves; write eval/report.*."""
    groups = context.extra.get("eval_groups") or {}
    if not groups or not trainer.is_world_process_zero():
        return {}
    run = context.run
    model = common.load_model(context.loaded, str(run.final), context.device)
    if context.device.cuda:
        model = model.to("cuda")
    model.eval()
    report = pairwise_accuracy(model, context.tokenizer, groups, context.args.get("max_length", 1024))
    outputs = EvalDir(run.eval_dir)
    outputs.path.mkdir(exist_ok=True)
    write_atomic(outputs.report, json.dumps({"pairwise_accuracy": report}, indent=2) + "\n")
    lines = ["| pairs from | pairs | accuracy | mean margin |", "|---|---|---|---|"]
    lines += [f"| {label} | {r['pairs']} | {100 * r['accuracy']:.1f}% | {r['mean_margin']:.3f} |"
              for label, r in report.items()]
    write_atomic(outputs.report_markdown, "\n".join(lines) + "\n")
    for label, r in report.items():
        print(f"posttrain: reward model pairwise accuracy on {label}: {100 * r['accuracy']:.1f}% "
              f"({r['correct']}/{r['pairs']})")
    return {f"eval/pairwise_accuracy/{label}": r["accuracy"] for label, r in report.items()}
