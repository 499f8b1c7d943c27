"""Odds-ratio preference optimisation over TRL's ORPOTrainer (Hong et al., 2024, arXiv 2403.07691):
the SFT loss on the chosen answer plus `beta` (ORPO's lambda) times the log odds-ratio of chosen
over rejected, with no reference model. TRL keeps it in `trl.experimental.orpo`.

    posttrain run recipes/orpo/smoke.yaml

Pairs come from anything DPO reads (files and hub shapes, trees with `traces: {kind: pairs}`),
checked and counted as DPO's are. The order of a run is trainers/skeleton.py's.
"""

from __future__ import annotations

from posttrain.recipe import LoadedRecipe
from posttrain.trainers import dpo
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {}


def data(context: Context) -> TrainData:
    return dpo.pairs_without_tools(context, "ORPOTrainer")


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl.experimental.orpo import ORPOTrainer

    return ORPOTrainer(model=context.model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                       processing_class=context.tokenizer, peft_config=context.peft_config, callbacks=callbacks)
