"""Every training run, in one order, written once:

1. arguments: the complete keyword arguments for the method's TRL config (common.trl_arguments:
   the recipe's trainer block, the device's and the batch's decisions, the run directory, the
   method's own managed keys, report_to);
2. distributed init (DeepSpeed's process group before any model is loaded);
3. the TRL config, built from exactly those arguments (before the model: under ZeRO-3 the model
   then loads sharded);
4. the model and tokenizer (with the chat-template preflight);
5. the data (a method may need the model: on-policy pairs are sampled from it);
6. the run records: recipe.resolved.yaml, whose trainer: block is the arguments of step 1, and
   env.json with the data fingerprints;
7. tracking (W&B, with the resolved recipe as its config);
8. the TRL trainer, with the metrics callback and the method's own callbacks.

A method's module (its row in methods.py names it) holds only what is its own:

    own_arguments(loaded) -> dict        trainer keys posttrain sets for this method ({} for none)
    data(context) -> TrainData           datasets and what the run records about them
    build(context, config, data, callbacks) -> the TRL trainer
    after_training(context, trainer) -> dict    optional: once final/ is saved (a reward model's
                                                pairwise accuracy); metrics for the run's summary
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from posttrain.methods import METHODS
from posttrain.recipe import Device, LoadedRecipe, resolved_dict
from posttrain.rundir import RunDir, checkpoint_step
from posttrain.trainers import common, hub_push


@dataclass
class TrainData:
    train: object  # a datasets.Dataset
    eval: object | None = None
    fingerprints: dict = field(default_factory=dict)  # recorded in env.json under "data"


@dataclass
class Context:
    """What a method's data and build steps may use."""

    loaded: LoadedRecipe
    run: RunDir
    device: Device
    args: dict  # exactly the TRL config's keyword arguments
    model: object
    tokenizer: object
    extra: dict = field(default_factory=dict)  # what a method's data step leaves for its after_training

    @property
    def data_kind(self) -> str:
        """The record kind the method trains on (its row in methods.py)."""
        return METHODS[self.loaded.spec.method].data

    @property
    def data_seed(self) -> int:
        return common.data_seed(self.args)

    @property
    def peft_config(self):
        return common.lora_config(self.loaded)


def method_module(method: str):
    return importlib.import_module(METHODS[method].trainer)


def config_class(method: str):
    module, cls = METHODS[method].config
    return getattr(importlib.import_module(module), cls)


def build_trainer(loaded: LoadedRecipe, run: RunDir, checkpoint: Path | None, device: Device):
    """Everything up to `trainer.train()`, in the order above."""
    return _build(loaded, run, checkpoint, device)[0]


def _build(loaded: LoadedRecipe, run: RunDir, checkpoint: Path | None, device: Device):
    module = method_module(loaded.spec.method)
    args = common.trl_arguments(loaded, device, run, module.own_arguments)
    common.init_distributed(device)
    config = common.build_config(loaded, config_class(loaded.spec.method), args)
    model, tokenizer = common.load_model_and_tokenizer(loaded, device)
    common.check_lora_targets(loaded, model)
    context = Context(loaded, run, device, args, model, tokenizer)
    data = module.data(context)
    resolved = resolved_dict(loaded, device, trl_args=args)
    if hub_push.wants_push(loaded):  # the Trainer's pushing is off; posttrain pushes at the end
        resolved["push_to_hub"] = {"repo": hub_push.repo_id(loaded), "pushes": "final/ and adapter/ at the end"}
    common.write_run_records(run, loaded, device, resolved, data.fingerprints)
    common.start_tracking(loaded, run, resolved)
    callbacks = [common.metrics_callback(run, checkpoint_step(checkpoint))]
    return module.build(context, config, data, callbacks), context


def train(loaded: LoadedRecipe, run: RunDir, checkpoint: Path | None, device: Device) -> dict:
    """Build the method's trainer, train (resuming from `checkpoint`), save final/, and run the
    method's after_training step if it has one."""
    trainer, context = _build(loaded, run, checkpoint, device)
    metrics = common.train_and_save(trainer, loaded, run, checkpoint)
    after = getattr(method_module(loaded.spec.method), "after_training", None)
    if after is not None:
        metrics.update(after(context, trainer))
    return metrics
