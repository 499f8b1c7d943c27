"""Reinforcement learning with verifiable rewards over TRL's GRPOTrainer (GRPO, Dr. GRPO, DAPO,
... through `trainer.loss_type`).

    posttrain run recipes/r1-zero/smoke.yaml
    accelerate launch --num_processes 8 -m posttrain run RECIPE

Prompts come from verifiable-task records; every other column of a record (ground_truth,
verifier, tests, ...) reaches the reward functions as a keyword argument. The order of a run is
trainers/skeleton.py's.
"""

from __future__ import annotations

from posttrain.data.loading import build_mixture, held_out, to_dataset
from posttrain.methods import METHODS
from posttrain.recipe import LoadedRecipe, check_vllm_installed
from posttrain.rewards import build_reward_ref
from posttrain.trainers import common
from posttrain.trainers.skeleton import Context, TrainData


def rlvr_data(loaded: LoadedRecipe, seed: int, kind: str = METHODS["rlvr"].data):
    """Task records without their reference completions (the policy writes its own): train, and
    eval (data.eval or data.eval_fraction; None without), and the fingerprints."""
    records, sources = build_mixture(loaded.spec.data.train, kind, seed)
    records, evaluation, eval_sources = held_out(loaded.spec.data, records, kind, seed)

    def prompts_only(rows):
        return [{k: v for k, v in r.items() if k != "completion"} for r in rows]

    fingerprints = common.source_records(sources + eval_sources)
    return (to_dataset(prompts_only(records)), evaluation and to_dataset(prompts_only(evaluation)),
            fingerprints)


def zero_loss_reason(logs: dict, beta: float) -> str | None:
    """Why a logged GRPO loss is exactly 0, or None when it is not."""
    if logs.get("loss") != 0.0:
        return None
    if logs.get("frac_reward_zero_std") == 1.0:
        reason = ("every prompt's group of completions got the same reward (frac_reward_zero_std 1.0), so every "
                  "advantage is 0 and there is no gradient. Easier or harder prompts, more generations, a graded "
                  "reward or dynamic_sampling give the groups a spread")
        if beta == 0:
            return reason + "; and beta is 0, so there is no KL term either"
        if logs.get("kl") == 0.0:
            return reason + "; and the policy still equals the reference model (KL 0)"
        return reason
    return ("on freshly sampled completions the policy ratio is 1, so the loss value is the token-weighted mean "
            "advantage, and a group's advantages sum to 0: with completions of equal length the value is exactly "
            "0 while its gradient is not. This is normal for GRPO; watch the reward, not the loss")


def explain_zero_loss(beta: float):
    """A TrainerCallback printing why a step's loss is exactly 0 (rank 0)."""
    from transformers import TrainerCallback

    class ZeroLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            reason = zero_loss_reason(logs or {}, beta)
            if reason and state.is_world_process_zero:
                print(f"posttrain: step {state.global_step}: loss is exactly 0 because {reason}.")

    return ZeroLoss()


def own_arguments(loaded: LoadedRecipe) -> dict:
    """GRPO sums the rewards with these weights (a managed key: rewards[i].weight sets them)."""
    check_vllm_installed(loaded)  # use_vllm without a GPU is an error earlier, at resolution
    return {"reward_weights": [reward.weight for reward in loaded.spec.rewards]}


def data(context: Context) -> TrainData:
    train, evaluation, fingerprints = rlvr_data(context.loaded, context.data_seed, context.data_kind)
    return TrainData(train, evaluation, fingerprints)


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import GRPOTrainer

    loaded = context.loaded
    rewards = [build_reward_ref(r) for r in loaded.spec.rewards]
    for reward in rewards:
        reward.warm()
    trainer_class, extra = GRPOTrainer, {}
    if loaded.spec.dynamic_sampling is not None:
        from posttrain.trainers.dynamic import dynamic_grpo_class

        trainer_class = dynamic_grpo_class(GRPOTrainer)
        extra = {"max_retries": loaded.spec.dynamic_sampling.max_retries}
    return trainer_class(**extra, model=context.model, reward_funcs=rewards, args=config, train_dataset=data.train,
                         eval_dataset=data.eval,
                         processing_class=context.tokenizer, peft_config=context.peft_config,
                         callbacks=[*callbacks, explain_zero_loss(config.beta)])
