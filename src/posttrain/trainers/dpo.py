"""Direct preference optimisation over TRL's DPOTrainer: every TRL loss type through
`trainer.loss_type` (sigmoid; length-normalised sigmoid_norm as in Tulu 3; ipo, hinge, robust,
exo_pair, apo_*, ...; lists combine them with `loss_weights`), LoRA or full fine-tuning.

    posttrain run recipes/tulu3/dpo.yaml

Pairs come from files or hub datasets: {"prompt", "chosen", "rejected"} as strings or messages;
from reasoning trees (`traces: {kind: pairs}`); or on-policy (`on_policy:` on a task source):
answers sampled from the starting model, verified, correct paired with incorrect.
Unusable pairs (chosen == rejected, an empty side, longer than max_length) are dropped before
training and counted in the log and in env.json; with `data.overlong: truncate` pairs longer
than max_length are kept for TRL to truncate (its `truncation_mode`) and counted as truncated,
unless the prompt alone fills max_length (nothing of either answer would be left: dropped). The order of a run is trainers/skeleton.py's.
"""

from __future__ import annotations

from collections import Counter

from posttrain.chat_templates import render
from posttrain.data.loading import build_mixture, decontamination, drop_long_prompts, held_out, to_dataset
from posttrain.data.onpolicy import agree_across_ranks, sample_pairs
from posttrain.errors import UserError
from posttrain.recipe import LoadedRecipe
from posttrain.rewards.numeric import completion_text
from posttrain.trainers import common
from posttrain.trainers.skeleton import Context, TrainData


def _render(tokenizer, prompt, answer) -> int:
    """Token length of prompt + answer, through the chat template for message lists."""
    if isinstance(answer, list):
        messages = (prompt if isinstance(prompt, list) else []) + answer
        return len(render(tokenizer, messages, tokenize=True))
    return len(tokenizer((prompt or "") + answer, add_special_tokens=False).input_ids)


def _prompt_length(tokenizer, prompt) -> int:
    if isinstance(prompt, list):
        return len(render(tokenizer, prompt, tokenize=True, add_generation_prompt=True))
    return len(tokenizer(prompt or "", add_special_tokens=False).input_ids)


TRUNCATED = "truncated to max_length"


def unusable_reason(record: dict, tokenizer, max_length: int | None, overlong: str = "drop") -> str | None:
    """Why a pair cannot train (None: it can). With overlong "truncate", a pair over max_length
    gives TRUNCATED (kept) unless its prompt alone fills max_length."""
    chosen, rejected = record["chosen"], record["rejected"]
    if not completion_text(chosen).strip() or not completion_text(rejected).strip():
        return "empty"
    if completion_text(chosen).strip() == completion_text(rejected).strip():
        return "chosen == rejected"
    if max_length is not None:
        prompt = record.get("prompt")
        if max(_render(tokenizer, prompt, chosen), _render(tokenizer, prompt, rejected)) > max_length:
            if overlong == "drop":
                return f"longer than max_length ({max_length})"
            if _prompt_length(tokenizer, prompt) >= max_length:
                return f"prompt alone fills max_length ({max_length})"
            return TRUNCATED
    return None


def usable_pairs(records: list[dict], tokenizer, max_length: int | None,
                 overlong: str = "drop") -> tuple[list[dict], Counter, int]:
    """(kept pairs, dropped counts by reason, how many kept pairs TRL will truncate)."""
    dropped: Counter = Counter()
    kept, truncated = [], 0
    for record in records:
        reason = unusable_reason(record, tokenizer, max_length, overlong)
        if reason == TRUNCATED:
            truncated += 1
            kept.append(record)
        elif reason:
            dropped[reason] += 1
        else:
            kept.append(record)
    return kept, dropped, truncated


def training_pairs(context: Context, records: list[dict], evaluation: list[dict] | None):
    """The usable training and evaluation pairs (the rest dropped, counted and printed; over-long
    ones kept for TRL to truncate with data.overlong: truncate), as (records, evaluation, dropped,
    truncated). No usable pair left is an error naming data.train or data.eval."""
    loaded, tokenizer = context.loaded, context.tokenizer
    max_length, overlong = context.args.get("max_length", 1024), loaded.spec.data.overlong
    records, dropped, truncated = usable_pairs(records, tokenizer, max_length, overlong)
    if dropped:
        print(f"posttrain: dropped {sum(dropped.values())} unusable pairs: "
              + ", ".join(f"{n} {reason}" for reason, n in sorted(dropped.items())))
    if truncated:
        print(f"posttrain: {truncated} pairs longer than max_length ({max_length}) are truncated "
              f"({context.args.get('truncation_mode', 'keep_start')})")
    if not records:
        raise loaded.error(("data", "train"), "no usable preference pairs left")
    if evaluation is not None:
        evaluation, _, _ = usable_pairs(evaluation, tokenizer, max_length, overlong)
        if not evaluation:
            raise loaded.error(("data", "eval"), "no usable preference pairs left to evaluate on")
    return records, evaluation, dropped, truncated


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {}


def data(context: Context) -> TrainData:
    """Pairs from every source (on-policy ones sampled from the model as it is before training),
    the unusable ones dropped and counted."""
    loaded, model, tokenizer, device = context.loaded, context.model, context.tokenizer, context.device
    sampled: dict = {}

    def pair_sampler(source, tasks):
        """On-policy pairs from the model as it is before training (every rank samples in
        lockstep, which ZeRO-3 needs; rank 0's pairs are used everywhere)."""
        tasks, _ = drop_long_prompts(tasks, tokenizer, loaded.spec.data.max_prompt_length, source.label)
        pairs, stats = sample_pairs(model, tokenizer, tasks, source.on_policy)
        pairs, stats = agree_across_ranks((pairs, stats))
        sampled[source.label] = dict(stats)
        print(f"posttrain: on-policy pairs from {source.label}: {stats['pairs']} pairs from "
              f"{stats['prompts']} prompts x {source.on_policy.samples} samples ("
              f"{stats['all answers correct']} all correct, {stats['no correct answer']} none correct)")
        return pairs

    if device.cuda and not any(hasattr(p, "ds_id") for p in model.parameters()):
        model.to("cuda")  # sampling on the GPU; ZeRO-3 shards stay where DeepSpeed put them
    records, sources = build_mixture(loaded.spec.data.train, context.data_kind, context.data_seed,
                                     decontamination(loaded.spec, context.data_kind), pair_sampler=pair_sampler)
    records, evaluation, eval_sources = held_out(loaded.spec.data, records, context.data_kind, context.data_seed)
    records, evaluation, dropped, truncated = training_pairs(context, records, evaluation)
    fingerprints = common.source_records(sources + eval_sources)
    fingerprints["dropped_pairs"] = dict(dropped)
    fingerprints["truncated_pairs"] = truncated
    if evaluation is not None:
        fingerprints["eval_pairs"] = len(evaluation)
    if sampled:
        fingerprints["on_policy"] = sampled
    return TrainData(to_dataset(records), evaluation and to_dataset(evaluation), fingerprints)


def pairs_without_tools(context: Context, trainer: str) -> TrainData:
    """DPO's pairs for a trainer that renders rows without their `tools` (TRL's experimental
    ORPO and CPO trainers): a tools column is refused, not dropped."""
    data_ = data(context)
    if "tools" in data_.train.column_names:
        raise UserError(f"{context.loaded.source}: data.train: a 'tools' column: TRL's {trainer} renders each row "
                        "without it; remove the column (or use method: dpo, which reads it)")
    return data_


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import DPOTrainer

    return DPOTrainer(model=context.model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                      processing_class=context.tokenizer, peft_config=context.peft_config, callbacks=callbacks)
