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
    return to_dataset(train), eval_records and to_dataset(eval_records), fingerprints


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
    resolved = common.write_run_records(run, loaded, device, fingerprints)

    args["report_to"] = common.start_tracking(loaded, run, resolved)
    common.init_distributed(device)
    config = common.build_config(loaded, SFTConfig, args)  # first: under ZeRO-3 the model loads sharded
    model, tokenizer = common.load_model_and_tokenizer(loaded, device)
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
