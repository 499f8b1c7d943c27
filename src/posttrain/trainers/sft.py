"""Supervised fine-tuning over TRL's SFTTrainer.

    posttrain run recipes/quickstart/sft.yaml                  # one CPU or GPU
    torchrun --nproc_per_node 8 -m posttrain run RECIPE        # one node, 8 GPUs
"""

from __future__ import annotations

from posttrain.data.loading import build_mixture, to_dataset
from posttrain.recipe import Device, LoadedRecipe
from posttrain.trainers import common


def sft_data(loaded: LoadedRecipe, seed: int):
    """Train and eval datasets, and a fingerprint per source for the run record."""
    spec = loaded.spec.data
    train, sources = build_mixture(spec.train, "sft", seed, decontamination(loaded))
    eval_records = None
    if spec.eval:
        eval_records, eval_sources = build_mixture(spec.eval, "sft", seed)
        sources += eval_sources
    elif spec.eval_fraction:
        cut = max(1, round(len(train) * spec.eval_fraction))
        train, eval_records = train[cut:], train[:cut]
    fingerprints = common.source_records(sources, contamination=spec.decontaminate is not None)
    fingerprints.update(_traced(spec.train, sources))
    return to_dataset(train), eval_records and to_dataset(eval_records), fingerprints


def _traced(specs, sources) -> dict:
    """Trace sources' completions, kept aside (not recorded) so their tokens can be counted
    once the tokenizer is loaded."""
    traced = [(spec.traces.kind, item.label, [r["completion"][-1]["content"] for r in item.records])
              for spec, item in zip(specs, sources) if spec.traces is not None and spec.traces.kind != "pairs"]
    return {"_traces": traced} if traced else {}


def report_trace_tokens(fingerprints: dict, tokenizer) -> None:
    """Print how many tokens each trace source's completions hold (shortcut vs journey)."""
    for kind, label, texts in fingerprints.pop("_traces", []):
        tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids)
        fingerprints[label]["trace_tokens"] = tokens
        print(f"posttrain: {label}: {len(texts)} {kind} traces, {tokens:,} completion tokens "
              f"({tokens / max(1, len(texts)):.1f} per trace)")


def decontamination(loaded: LoadedRecipe):
    """(index of every evaluation set, threshold, drop?) when the recipe asks for it."""
    from posttrain.data.decontaminate import eval_index

    spec = loaded.spec.data.decontaminate
    if spec is None:
        return None
    return eval_index(loaded, spec.n), spec.threshold, spec.action == "drop"


def build_sft_trainer(loaded: LoadedRecipe, run: common.RunDir, checkpoint, device: Device):
    """Everything up to `trainer.train()`: data, run records, model, preflight, TRL trainer."""
    from trl import SFTConfig, SFTTrainer

    args = common.trainer_arguments_for(loaded, device, run)
    train, evaluation, fingerprints = sft_data(loaded, common.data_seed(args))
    common.init_distributed(device)
    config = common.build_config(loaded, SFTConfig, args)  # first: under ZeRO-3 the model loads sharded
    model, tokenizer = common.load_model_and_tokenizer(loaded, device)
    report_trace_tokens(fingerprints, tokenizer)
    resolved = common.write_run_records(run, loaded, device, fingerprints)
    config.report_to = common.start_tracking(loaded, run, resolved)  # read when the trainer is built
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=common.lora_config(loaded),
        callbacks=[common.metrics_callback(run, common.checkpoint_step(checkpoint))],
    )


def run_sft(loaded: LoadedRecipe, run: common.RunDir, checkpoint, device: Device) -> dict:
    return common.train_and_save(build_sft_trainer(loaded, run, checkpoint, device), loaded, run, checkpoint)
