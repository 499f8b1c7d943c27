"""REINFORCE leave-one-out over TRL's RLOOTrainer (Ahmadian et al., 2024, arXiv 2402.14740): each
completion's advantage is its reward minus the mean reward of the other completions of its
prompt. Rewards, data, the reward preflight and the chat_template_kwargs are rlvr's (GRPO's);
only TRL's trainer differs.

    posttrain run recipes/rloo/smoke.yaml
"""

from __future__ import annotations

from posttrain.recipe import LoadedRecipe
from posttrain.trainers import rlvr
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    return rlvr.own_arguments(loaded)


def data(context: Context) -> TrainData:
    return rlvr.data(context)


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import RLOOTrainer

    rewards = rlvr.prepared_rewards(context, config, data)
    return rlvr.rollout_class(context.loaded, RLOOTrainer)(model=context.model, reward_funcs=rewards, args=config, train_dataset=data.train,
                       eval_dataset=data.eval, processing_class=context.tokenizer, peft_config=context.peft_config,
                       callbacks=callbacks)
