"""Contrastive preference optimisation over TRL's CPOTrainer (Xu et al., 2024, arXiv 2401.08417),
which is also SimPO (Meng et al., 2024, arXiv 2405.14734) with `loss_type: simpo` (length-
normalised log-probabilities, the target margin `simpo_gamma`) and `cpo_alpha: 0` (no SFT term),
as open-instruct and LLaMA-Factory run SimPO. No reference model. TRL keeps it in
`trl.experimental.cpo`.

    posttrain run recipes/cpo/smoke-simpo.yaml

Pairs come from anything DPO reads, checked and counted as DPO's are.
"""

from __future__ import annotations

from posttrain.recipe import LoadedRecipe
from posttrain.trainers import dpo
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {}


def data(context: Context) -> TrainData:
    return dpo.pairs_without_tools(context, "CPOTrainer")


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl.experimental.cpo import CPOTrainer

    return CPOTrainer(model=context.model, args=config, train_dataset=data.train, eval_dataset=data.eval,
                      processing_class=context.tokenizer, peft_config=context.peft_config, callbacks=callbacks)
