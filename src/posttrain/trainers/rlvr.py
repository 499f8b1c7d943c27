"""Reinforcement learning with verifiable rewards over TRL's GRPOTrainer (GRPO, Dr. GRPO, DAPO,
... through `trainer.loss_type`).

    posttrain run recipes/quickstart/rlvr.yaml
    accelerate launch --num_processes 8 -m posttrain run RECIPE

Prompts come from verifiable-task records; every other column of a record (ground_truth,
verifier, tests, ...) reaches the reward functions as a keyword argument.
"""

from __future__ import annotations

from posttrain.data.loading import build_mixture, to_dataset
from posttrain.recipe import Device, LoadedRecipe, check_vllm_installed
from posttrain.rewards import build_reward
from posttrain.trainers import common


def rlvr_data(loaded: LoadedRecipe, seed: int):
    """Task records without their reference completions (the policy writes its own)."""
    records, sources = build_mixture(loaded.spec.data.train, "task", seed)
    records = [{k: v for k, v in r.items() if k != "completion"} for r in records]
    fingerprints = common.source_records(sources)
    return to_dataset(records), fingerprints


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


def build_rlvr_trainer(loaded: LoadedRecipe, run: common.RunDir, checkpoint, device: Device):
    from trl import GRPOConfig, GRPOTrainer

    args = common.trainer_arguments_for(loaded, device, run)  # use_vllm without a GPU: an error here
    check_vllm_installed(loaded)
    args["reward_weights"] = [reward.weight for reward in loaded.spec.rewards]
    train, fingerprints = rlvr_data(loaded, common.data_seed(args))
    resolved = common.write_run_records(run, loaded, device, fingerprints)

    rewards = [build_reward(r.name, r.options, r.on_error) for r in loaded.spec.rewards]
    args["report_to"] = common.start_tracking(loaded, run, resolved)
    common.init_distributed(device)
    config = common.build_config(loaded, GRPOConfig, args)  # first: under ZeRO-3 the model loads sharded
    model, tokenizer = common.load_model_and_tokenizer(loaded, device)
    trainer_class, extra = GRPOTrainer, {}
    if loaded.spec.dynamic_sampling is not None:
        from posttrain.trainers.dynamic import dynamic_grpo_class

        trainer_class = dynamic_grpo_class(GRPOTrainer)
        extra = {"max_retries": loaded.spec.dynamic_sampling.max_retries}
    return trainer_class(
        **extra,
        model=model,
        reward_funcs=rewards,
        args=config,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=common.lora_config(loaded),
        callbacks=[common.metrics_callback(run, common.checkpoint_step(checkpoint)),
                   explain_zero_loss(config.beta)],
    )


def run_rlvr(loaded: LoadedRecipe, run: common.RunDir, checkpoint, device: Device) -> dict:
    return common.train_and_save(build_rlvr_trainer(loaded, run, checkpoint, device), loaded, run, checkpoint)
