"""Reinforcement learning with verifiable rewards over TRL's GRPOTrainer (GRPO, Dr. GRPO, DAPO,
... through `trainer.loss_type`).

    posttrain run recipes/r1-zero/smoke.yaml
    accelerate launch --num_processes 8 -m posttrain run RECIPE

Prompts come from verifiable-task records; every other column of a record (ground_truth,
verifier, tests, ...) reaches the reward functions as a keyword argument. The order of a run is
trainers/skeleton.py's.
"""

from __future__ import annotations

from posttrain.data.loading import (apply_rows_template_kwargs, build_mixture, decontamination, drop_long_prompts,
                                    held_out, to_dataset)
from posttrain.methods import METHODS
from posttrain.recipe import LoadedRecipe, check_vllm_installed
from posttrain.errors import UserError
from posttrain.rewards import build_reward_ref, check_ground_truths
from posttrain.trainers import common
from posttrain.trainers.skeleton import Context, TrainData


def rlvr_data(loaded: LoadedRecipe, seed: int, kind: str = METHODS["rlvr"].data, tokenizer=None):
    """Task records without their reference completions (the policy writes its own): train, and
    eval (data.eval or data.eval_fraction; None without), and the fingerprints. With a
    tokenizer, prompts over data.max_prompt_length are dropped and counted."""
    records, sources = build_mixture(loaded.spec.data.train, kind, seed, decontamination(loaded.spec, kind))
    records, evaluation, eval_sources = held_out(loaded.spec.data, records, kind, seed)
    limit = loaded.spec.data.max_prompt_length if tokenizer is not None else None
    records, long_train = drop_long_prompts(records, tokenizer, limit, "data.train")
    long_eval = 0
    if evaluation:
        evaluation, long_eval = drop_long_prompts(evaluation, tokenizer, limit, "data.eval")
    for i, ref in enumerate(loaded.spec.rewards):  # a verifier that cannot read the answers: now, not at step 1
        reward = build_reward_ref(ref, loaded.spec.trainer.get("max_completion_length", 512))
        check_ground_truths(reward, records, f"data.train (rewards.{i}: {ref.name})")
        if evaluation:
            check_ground_truths(reward, evaluation, f"data.eval (rewards.{i}: {ref.name})")

    def prompts_only(rows):
        return [{k: v for k, v in r.items() if k != "completion"} for r in rows]

    if any("completion" in r for r in records):
        print("posttrain: data.train: ignored columns: completion (the policy samples its own answers; the "
              "reference ones are not trained on)")
    fingerprints = common.source_records(sources + eval_sources)
    if long_train or long_eval:
        fingerprints["long_prompts_dropped"] = {"train": long_train, "eval": long_eval}
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


def rendering_arguments(loaded: LoadedRecipe) -> dict:
    """The config key of the methods that generate whose TRL config renders prompts itself
    (GRPO, RLOO, distillation): model.chat_template_kwargs (a managed key)."""
    kwargs = loaded.spec.model.chat_template_kwargs
    return {"chat_template_kwargs": dict(kwargs)} if kwargs else {}


def own_arguments(loaded: LoadedRecipe) -> dict:
    """GRPO sums the rewards with these weights (a managed key: rewards[i].weight sets them), and
    renders prompts with model.chat_template_kwargs."""
    check_vllm_installed(loaded)  # use_vllm without a GPU is an error earlier, at resolution
    return {"reward_weights": [reward.weight for reward in loaded.spec.rewards], **rendering_arguments(loaded)}


def template_kwargs(context: Context, rows: list[dict]) -> None:
    """The rows' own chat_template_kwargs (one set for all: generation renders every prompt one
    way) over model.chat_template_kwargs, for the tokenizer and, at build, GRPO's config."""
    merged = apply_rows_template_kwargs(context.tokenizer, rows, "data", context.loaded.spec.model.chat_template_kwargs)
    if merged:
        context.extra["chat_template_kwargs"] = merged
        print(f"posttrain: prompts are rendered with the rows' chat_template_kwargs {merged}")


def data(context: Context) -> TrainData:
    train, evaluation, fingerprints = rlvr_data(context.loaded, context.data_seed, context.data_kind,
                                                context.tokenizer)
    template_kwargs(context, list(train) + (list(evaluation) if evaluation is not None else []))
    return TrainData(train, evaluation, fingerprints)


def preflight_summary(scores: dict[str, list[list[float]]], weights: list[float]) -> dict:
    """The reward distribution of sampled groups: {reward name: mean}, the weighted total of
    each completion, and the share of groups whose total has no spread (nothing to learn)."""
    names = list(scores)
    groups = len(next(iter(scores.values()))) if scores else 0
    totals = [[sum(w * scores[name][g][j] for name, w in zip(names, weights)) for j in range(len(scores[names[0]][g]))]
              for g in range(groups)]
    flat = [t for group in totals for t in group]
    flat_groups = sum(1 for group in totals if max(group) - min(group) <= 1e-12)
    return {"means": {name: sum(sum(g) for g in scores[name]) / max(1, len(flat)) for name in names},
            "totals": totals, "zero_spread": flat_groups / max(1, groups),
            "all_equal": bool(flat) and max(flat) - min(flat) <= 1e-12, "value": flat[0] if flat else None}


def preflight_failure(summary: dict) -> str | None:
    """Why GRPO could learn nothing from these groups (one line), or None when some group has spread."""
    if summary["zero_spread"] < 1.0:
        return None
    if summary["all_equal"] and summary["value"] == 0:
        return ("no sampled completion earned any reward, so every advantage is 0. Most likely the prompt does not "
                "ask for the answer format the verifier reads (an `Answer:` line, an <answer> tag, \\boxed{}): give "
                "the task an instruction (options: {instruction: answer_line}, or the source's system_prompt); "
                "else the reward never fires on this model's answers")
    if summary["all_equal"]:
        return (f"every sampled completion got the same reward ({summary['value']:g}), so every advantage is 0; "
                "the reward does not tell the answers apart")
    return ("within every prompt's group all completions got the same reward, so every advantage is 0; more "
            "generations, a higher temperature, other prompts or a graded reward give the groups a spread")


def reward_preflight(context: Context, config, dataset, rewards) -> dict | None:
    """Before GRPO spends its steps: sample `prompts` x num_generations completions from the
    starting policy as GRPO will (its temperature, top-p and completion length), score them with
    every reward, print the distribution, and stop (exit 2) when no group has any spread."""
    from posttrain.sampling import Sampling, as_engine, score_answers

    spec = context.loaded.spec.reward_preflight
    if spec is not None and not spec.enabled:
        return None
    if any(hasattr(p, "ds_id") for p in context.model.parameters()):
        # ZeRO-3 holds a shard of every weight on each rank: sampling needs them all gathered,
        # which is what ZeRO-3 is there to avoid. TRL's frac_reward_zero_std shows it per step.
        print("posttrain: reward preflight skipped: the model is sharded (ZeRO-3); watch frac_reward_zero_std")
        return None
    prompts = spec.prompts if spec is not None else 4
    examples = spec.examples if spec is not None else 3
    records = [dataset[i] for i in range(min(prompts, len(dataset)))]
    n = config.num_generations
    sampling = Sampling(config.max_completion_length, config.temperature or 1.0, config.top_p, config.seed)
    answers = as_engine(context.model, context.tokenizer, len(records)).generate([r["prompt"] for r in records], n,
                                                                                 sampling)
    # token ids of each completion, as TRL passes them (length rewards read them): the answer
    # re-tokenised, which can differ from the sampled ids by a token at a merge
    ids = {"completion_ids": [context.tokenizer(a, add_special_tokens=False).input_ids for group in answers for a in group]}
    scores = {reward.__name__: score_answers(ref, records, answers, ids, config.max_completion_length)
              for reward, ref in zip(rewards, context.loaded.spec.rewards)}
    summary = preflight_summary(scores, [ref.weight for ref in context.loaded.spec.rewards])
    means = ", ".join(f"{name} {mean:.3f}" for name, mean in summary["means"].items())
    print(f"posttrain: reward preflight: {len(records)} prompts x {n} completions from the starting model: mean "
          f"{means}; {100 * summary['zero_spread']:.0f}% of groups have no spread")
    for g, j in [(g, j) for g in range(len(records)) for j in range(n)][:: max(1, (len(records) * n) // max(1, examples))][:examples]:
        text = " ".join(answers[g][j].split())
        print(f"posttrain:   total {summary['totals'][g][j]:g}: {text[:160]!r}{'...' if len(text) > 160 else ''}")
    reason = preflight_failure(summary)
    if reason:
        raise UserError(f"{context.loaded.source}: reward preflight: {reason} "
                        "(reward_preflight.enabled=false skips this check)")
    return summary


def row_rendering(context: Context, config) -> None:
    """The rows' chat_template_kwargs (template_kwargs found them) into the TRL config too."""
    if "chat_template_kwargs" in context.extra:
        config.chat_template_kwargs = context.extra["chat_template_kwargs"]


def warm_rewards(refs, max_completion_length: int | None = None) -> list:
    """The recipe's rewards built (composed with their gate and truncation rule) and started."""
    rewards = [build_reward_ref(r, max_completion_length) for r in refs]
    for reward in rewards:
        reward.warm()
    return rewards


def prepared_rewards(context: Context, config, data: TrainData) -> list:
    """What GRPO and RLOO do before their trainer: the rows' rendering into the config, the
    rewards built and started, and the reward preflight (which may stop the run)."""
    row_rendering(context, config)
    rewards = warm_rewards(context.loaded.spec.rewards, config.max_completion_length)
    reward_preflight(context, config, data.train, rewards)
    return rewards


def rollout_class(loaded: LoadedRecipe, base):
    """`base` with its rollouts through posttrain's loop (trainers/rollouts.py), unless the
    recipe says `rollouts: trl`."""
    if loaded.spec.rollouts == "trl":
        return base
    from posttrain.trainers.rollouts import engine_rollouts

    return engine_rollouts(base)


def greedy_eval_class(base):
    """`base` (a GRPOTrainer class) whose in-training evaluation generates greedily (eval_greedy):
    during `evaluate` its generation config samples nothing; training generation is untouched."""
    from transformers import GenerationConfig

    class GreedyEvaluation(base):
        def evaluate(self, *args, **kwargs):
            saved = self.generation_config, self.generation_kwargs
            greedy = {**self.generation_kwargs, "do_sample": False, "temperature": None, "top_p": None,
                      "top_k": None, "min_p": None}
            self.generation_config, self.generation_kwargs = GenerationConfig(**greedy, disable_compile=True), greedy
            try:
                return super().evaluate(*args, **kwargs)
            finally:
                self.generation_config, self.generation_kwargs = saved

    GreedyEvaluation.__name__ = f"GreedyEvaluation{base.__name__}"
    return GreedyEvaluation


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import GRPOTrainer

    loaded = context.loaded
    rewards = prepared_rewards(context, config, data)
    trainer_class, extra = rollout_class(loaded, GRPOTrainer), {}
    if loaded.spec.dynamic_sampling is not None:
        from posttrain.trainers.dynamic import dynamic_grpo_class

        trainer_class = dynamic_grpo_class(trainer_class)
        extra = {"max_retries": loaded.spec.dynamic_sampling.max_retries}
    if loaded.spec.eval_greedy:
        trainer_class = greedy_eval_class(trainer_class)
    return trainer_class(**extra, model=context.model, reward_funcs=rewards, args=config, train_dataset=data.train,
                         eval_dataset=data.eval,
                         processing_class=context.tokenizer, peft_config=context.peft_config,
                         callbacks=[*callbacks, explain_zero_loss(config.beta)])
