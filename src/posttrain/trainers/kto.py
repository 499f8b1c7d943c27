"""Kahneman-Tversky optimisation over TRL's KTOTrainer: alignment from unpaired feedback, each
completion labelled desirable or not (Ethayarajh et al., 2024, arXiv 2402.01306). Every KTOConfig
option is reachable from `trainer:` (loss_type kto | apo_zero_unpaired, beta, desirable_weight,
undesirable_weight, ...), with LoRA through `peft:`.

    posttrain run recipes/quickstart/kto.yaml

Records are {"prompt", "completion", "label": true | false}, or preference pairs, which become
one desirable (chosen) and one undesirable (rejected) record each and are shuffled (seeded) so
that TRL's sequential batches mix both labels. The order of a run is trainers/skeleton.py's.
"""

from __future__ import annotations

import random
from collections import Counter

from posttrain.data.loading import PASSED_ON, build_mixture, decontamination, held_out, to_dataset
from posttrain.recipe import LoadedRecipe
from posttrain.rewards.numeric import completion_text
from posttrain.trainers import common
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {}


def unpaired(records: list[dict], seed: int) -> tuple[list[dict], Counter]:
    """Labelled records as they are; pairs split into a desirable and an undesirable record, then
    shuffled. Records with an empty completion are dropped and counted."""
    out: list[dict] = []
    for record in records:
        if "label" in record:
            out.append(record)
            continue
        prompt = {"prompt": record["prompt"]} if "prompt" in record else {}
        prompt.update({k: record[k] for k in PASSED_ON if k in record})
        out += [{**prompt, "completion": record["chosen"], "label": True},
                {**prompt, "completion": record["rejected"], "label": False}]
    paired = any("label" not in r for r in records)
    kept = [r for r in out if completion_text(r["completion"]).strip()]
    if paired:
        random.Random(f"kto/{seed}").shuffle(kept)
    stats = Counter(desirable=sum(r["label"] for r in kept), undesirable=sum(not r["label"] for r in kept))
    if len(kept) < len(out):
        stats["dropped: empty completion"] = len(out) - len(kept)
    return kept, stats


def data(context: Context) -> TrainData:
    loaded = context.loaded
    records, sources = build_mixture(loaded.spec.data.train, context.data_kind, context.data_seed,
                                     decontamination(loaded.spec, context.data_kind))
    records, evaluation, eval_sources = held_out(loaded.spec.data, records, context.data_kind, context.data_seed)
    if evaluation is not None:
        evaluation, _ = unpaired(evaluation, context.data_seed)
    records, stats = unpaired(records, context.data_seed)
    print("posttrain: KTO records: " + ", ".join(f"{n} {what}" for what, n in stats.items()))
    if not stats["desirable"] or not stats["undesirable"]:
        raise loaded.error(("data", "train"), "KTO needs both desirable (label: true) and undesirable "
                           f"(label: false) completions; got {stats['desirable']} and {stats['undesirable']}")
    fingerprints = common.source_records(sources + eval_sources)
    fingerprints["kto"] = dict(stats)
    return TrainData(to_dataset(records), evaluation and to_dataset(evaluation), fingerprints)


def dataset_kl_class(base):
    """`base` (TRL's KTOTrainer) for per-device batch 1. KTO's KL estimate scores each prompt with
    a completion of another record; TRL takes it from the same batch (rotating completions within
    each batch) and so refuses batch 1, where the only other completion is the record's own.
    Here the rotation runs over the whole (shuffled, sequential) dataset instead: record i is
    scored against record i-1's completion, as the original KTO code and OpenRLHF pair them,
    whatever the batch size. Everything else is TRL's."""

    class DatasetKL(base):
        def __init__(self, *args, **kwargs):
            config = kwargs["args"]
            real = config.per_device_train_batch_size
            config.per_device_train_batch_size = 2  # past TRL's batch-1 check; the pairing is below
            try:
                super().__init__(*args, **kwargs)
            finally:
                config.per_device_train_batch_size = real
            self._train_batch_size = config.train_batch_size

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            saved = args.per_device_train_batch_size
            args.per_device_train_batch_size = max(2, len(dataset))  # one "batch": the rotation spans the dataset
            try:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            finally:
                args.per_device_train_batch_size = saved

    return DatasetKL


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import KTOTrainer

    trainer_class = KTOTrainer
    if config.per_device_train_batch_size == 1 and config.loss_type != "apo_zero_unpaired":
        print("posttrain: KTO with batch.per_device 1: each KL completion is the previous record's across the "
              "dataset (TRL pairs within a batch, which needs 2)")
        trainer_class = dataset_kl_class(KTOTrainer)
    return trainer_class(model=context.model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                      processing_class=context.tokenizer, peft_config=context.peft_config, callbacks=callbacks)
