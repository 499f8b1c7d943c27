"""Online DPO over TRL's OnlineDPOTrainer (Guo et al., 2024, arXiv 2402.04792): for each prompt the
policy samples two completions, posttrain's rewards rank them (a verifier on the record's
ground truth, a trained reward model, posttrain's LLM judge: `rewards: [{name: ...}]`, summed
with their weights), and the DPO loss trains on the pair. TRL keeps it in
`trl.experimental.online_dpo`.

    posttrain run recipes/online-dpo/smoke.yaml

Prompts are `prompts` records (a task record whose ground truth is optional: a reward model
needs none); data, the prompt-length filter and the chat_template_kwargs are rlvr's.
"""

from __future__ import annotations

from posttrain.recipe import LoadedRecipe
from posttrain.trainers import rlvr
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    return {"reward_weights": [reward.weight for reward in loaded.spec.rewards]}


def data(context: Context) -> TrainData:
    return rlvr.data(context)


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl.experimental.online_dpo import OnlineDPOTrainer

    rewards = rlvr.warm_rewards(context.loaded.spec.rewards)
    return OnlineDPOTrainer(model=context.model, reward_funcs=rewards, args=config, train_dataset=data.train,
                            eval_dataset=data.eval, processing_class=context.tokenizer,
                            peft_config=context.peft_config, callbacks=callbacks)
