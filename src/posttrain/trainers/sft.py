"""Supervised fine-tuning over TRL's SFTTrainer.

    posttrain run recipes/quickstart/sft.yaml                  # one CPU or GPU
    torchrun --nproc_per_node 8 -m posttrain run RECIPE        # one node, 8 GPUs

The order of a run is trainers/skeleton.py's; this module holds what is SFT's own.
"""

from __future__ import annotations

from posttrain.chat_templates import render
from posttrain.data.loading import build_mixture, decontamination, held_out, to_dataset
from posttrain.methods import METHODS
from posttrain.recipe import LoadedRecipe
from posttrain.trainers import common
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {}


def sft_data(loaded: LoadedRecipe, seed: int, kind: str = METHODS["sft"].data):
    """Train and eval records, and a fingerprint per source for the run record."""
    spec = loaded.spec.data
    train, sources = build_mixture(spec.train, kind, seed, decontamination(loaded.spec, kind))
    train, eval_records, eval_sources = held_out(spec, train, kind, seed)
    sources += eval_sources
    fingerprints = common.source_records(sources)
    fingerprints.update(_traced(spec.train, sources))
    return train, eval_records, fingerprints


def _traced(specs, sources) -> dict:
    """Trace sources' completions, kept aside (not recorded) so their tokens can be counted
    once the tokenizer is loaded."""
    traced = [(spec.traces.kind, item.label, [r["completion"][-1]["content"] for r in item.records])
              for spec, item in zip(specs, sources) if spec.traces is not None and spec.traces.kind in ("shortcut", "journey")]
    return {"_traces": traced} if traced else {}


def report_trace_tokens(fingerprints: dict, tokenizer) -> None:
    """Print how many tokens each trace source's completions hold (shortcut vs journey)."""
    for kind, label, texts in fingerprints.pop("_traces", []):
        tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids)
        fingerprints[label]["trace_tokens"] = tokens
        print(f"posttrain: {label}: {len(texts)} {kind} traces, {tokens:,} completion tokens "
              f"({tokens / max(1, len(texts)):.1f} per trace)")


def data(context: Context) -> TrainData:
    train, evaluation, fingerprints = sft_data(context.loaded, context.data_seed, context.data_kind)
    report_trace_tokens(fingerprints, context.tokenizer)
    if any(r.get("loss_mask") for r in train):
        train = masked_examples(train, context.tokenizer)
        trained = sum(sum(1 for x in r["labels"] if x != -100) for r in train)
        print(f"posttrain: journey segments masked (traces.mask): {trained:,} completion tokens get a loss")
        if evaluation:
            evaluation = masked_examples(evaluation, context.tokenizer)
    return TrainData(to_dataset(train), evaluation and to_dataset(evaluation), fingerprints)


def masked_examples(records: list[dict], tokenizer) -> list[dict]:
    """Prompt-completion records tokenized as TRL's SFTTrainer tokenizes them (the chat
    template over prompt + completion), with `labels` -100 on the prompt and on every token that
    overlaps a `loss_mask` span of the completion (data/trees.py: the journey segments
    traces.mask names). TRL trains on a dataset with input_ids and labels as it is."""
    out = []
    for record in records:
        prompt, completion = record["prompt"], record["completion"]
        prompt_text = render(tokenizer, prompt, add_generation_prompt=True)
        full = render(tokenizer, prompt + completion)
        if not full.startswith(prompt_text):
            raise ValueError("the chat template renders the prompt differently inside the conversation; "
                             "traces.mask needs a template whose prompt is a prefix of prompt + completion")
        content = completion[-1]["content"]
        start = full.find(content, len(prompt_text))
        spans = [(start + a, start + b) for a, b in record.get("loss_mask") or []]
        encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        labels = []
        for token, (a, b) in zip(encoded["input_ids"], encoded["offset_mapping"]):
            hidden = a < len(prompt_text) or any(a < e and b > s for s, e in spans)
            labels.append(-100 if hidden else token)
        out.append({"input_ids": encoded["input_ids"], "labels": labels})
    return out


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import SFTTrainer

    return SFTTrainer(model=context.model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                      processing_class=context.tokenizer, peft_config=context.peft_config, callbacks=callbacks)
