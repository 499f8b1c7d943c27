"""The one table of training methods: a row per method.

A row says which TRL config dataclass the recipe's `trainer:` block is checked against and built
into, which record kind the method trains on (data/formats.py), which module builds its trainer
(trainers/<method>.py, loaded only when a run needs it: it imports torch and TRL), which
method-specific recipe keys it takes, which trainer keys posttrain sets for it, and its own
cross-field checks. Adding a method is a row here and a trainer module.

Pure Python: the checks take a loaded recipe (recipe/check.py's LoadedRecipe) and raise its
`error(path, message)`; nothing here imports the recipe package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

# Recipe keys that only some methods take (every other top-level key is common to all).
METHOD_KEYS = ("rewards", "dynamic_sampling", "on_policy", "reward_preflight", "eval_greedy", "teacher", "rollouts")


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    config: tuple[str, str]  # TRL config dataclass: (module, class)
    data: str  # record kind (data/formats.py)
    trainer: str  # module whose `build(context)` returns the TRL trainer
    keys: frozenset[str] = frozenset()  # the METHOD_KEYS it takes
    managed: dict[str, str] = field(default_factory=dict)  # trainer keys posttrain sets, and where to say them
    checks: tuple[Callable, ...] = ()  # check(loaded) -> None; raises loaded.error(...)
    model: str = "causal_lm"  # a key of MODEL_KINDS
    # Model passes per trained token, in forward-pass units (a backward pass costs two), from the
    # trainer block: what trainers/budget.py multiplies by 2 x parameters to estimate FLOPs.
    passes: Callable[[dict], float] = field(default=lambda trainer: 3.0)
    # Where the TRL trainer counts the tokens it trained on: its state's num_input_tokens_seen,
    # which a checkpoint restores (GRPO), or a counter of its own, `_total_train_tokens`, which
    # starts at 0 again on a resume (SFT, DPO, KTO, reward).
    tokens_in_state: bool = False
    # The method samples completions from prompts (RL, online DPO, on-policy distillation): the
    # template preflight checks what generation needs, and data.max_prompt_length applies.
    generates: bool = False
    # Part of its records is answered by the model from their prompts (GKD's lmbda), the rest as
    # written: data.max_prompt_length applies; the template preflight stays the one for training.
    samples_some: bool = False
    # Whether its TRL trainer counts the tokens it trains on at all (TRL's experimental ORPO,
    # CPO and online DPO trainers do not): run.max_train_tokens / max_train_flops need it.
    counts_tokens: bool = True
    # Where TRL keeps the trainer: "stable" (trl.trainer) or "experimental" (trl.experimental,
    # whose API may change in any TRL release: pyproject pins TRL's minor version for them).
    trl_status: str = "stable"


# What model each method trains: the transformers Auto class, its extra from_pretrained keyword
# arguments, and peft's task type for LoRA (its classification head then trains too).
MODEL_KINDS: dict[str, tuple[str, dict, str]] = {
    "causal_lm": ("AutoModelForCausalLM", {}, "CAUSAL_LM"),
    "sequence_classification": ("AutoModelForSequenceClassification", {"num_labels": 1}, "SEQ_CLS"),  # one score
    "token_classification": ("AutoModelForTokenClassification", {"num_labels": 2}, "TOKEN_CLS"),  # per step
}


def check_dpo_losses(loaded) -> None:
    trainer = loaded.spec.trainer
    losses = trainer.get("loss_type", ["sigmoid"])
    if "exo_pair" in losses and trainer.get("label_smoothing", 0.0) <= 0:
        raise loaded.error(("trainer", "label_smoothing"), "loss_type exo_pair needs label_smoothing > 0 "
                           "(EXO's epsilon, e.g. 1.0e-3)")
    weights = trainer.get("loss_weights")
    if weights is not None and len(weights) != len(losses):
        raise loaded.error(("trainer", "loss_weights"), f"{len(weights)} weights for {len(losses)} loss "
                           f"types {losses}; give one weight per loss type")


def check_rewards_given(loaded) -> None:
    if not loaded.spec.rewards:
        raise loaded.error(("rewards",), f"method {loaded.spec.method} needs at least one reward, e.g. "
                           "rewards: [{name: math}]")


# TRL's default num_generations per config: GRPOConfig 8, RLOOConfig 2.
DEFAULT_GENERATIONS = {"rlvr": 8, "rloo": 2}


def check_generation_groups(loaded) -> None:
    """GRPO samples num_generations completions per prompt; one generation batch must hold
    whole groups. batch.per_device counts completions, not prompts."""
    trainer, per_device, world = loaded.spec.trainer, loaded.spec.batch.per_device, loaded.world_size
    generations = trainer.get("num_generations", DEFAULT_GENERATIONS[loaded.spec.method])
    given = trainer.get("generation_batch_size")
    steps = trainer.get("steps_per_generation") or (  # as TRL derives it from generation_batch_size
        given // (per_device * world) if given and given % (per_device * world) == 0 else loaded.accumulation)
    batch = given or per_device * world * steps
    if generations < 2:
        raise loaded.error(("trainer", "num_generations"), "GRPO needs at least 2 generations per prompt "
                           "(advantages compare completions of the same prompt)")
    if batch % generations:
        fits = [g for g in range(2, generations) if batch % g == 0]
        per_device_fix = generations // math.gcd(generations, world * steps)
        raise loaded.error(
            ("trainer", "num_generations"),
            f"the generation batch (batch.per_device {per_device} x world size {world} x "
            f"steps_per_generation {steps} = {batch} completions) is not a multiple of num_generations "
            f"({generations}); make batch.per_device a multiple of {per_device_fix}"
            + (f", or set num_generations to {fits[-1]}" if fits else ""),
        )
    check_generation_settings(loaded, generations)
    if loaded.spec.dynamic_sampling is not None and (per_device * steps) % generations:
        raise loaded.error(("dynamic_sampling",), f"each process's generation batch (batch.per_device "
                           f"{per_device} x steps_per_generation {steps}) must hold whole groups "
                           f"of num_generations ({generations}) to drop and replace them")


def check_generation_settings(loaded, generations: int) -> None:
    """The rest of what GRPOConfig / RLOOConfig.__post_init__ refuses, checked at validation
    (they raise only once `run` has built the config): the generation and evaluation batches,
    and the options that contradict each other."""
    trainer, per_device, world = loaded.spec.trainer, loaded.spec.batch.per_device, loaded.world_size
    given = trainer.get("generation_batch_size")
    if given is not None and trainer.get("steps_per_generation") is not None:
        raise loaded.error(("trainer", "steps_per_generation"), "give generation_batch_size or "
                           "steps_per_generation, not both (one is derived from the other)")
    if given is not None and given % (per_device * world):
        raise loaded.error(("trainer", "generation_batch_size"), f"generation_batch_size ({given}) must be a "
                           f"multiple of the global batch (batch.per_device {per_device} x world size {world})")
    if trainer.get("eval_strategy", "no") != "no":
        eval_generations = trainer.get("num_generations_eval") or generations
        eval_batch = trainer.get("per_device_eval_batch_size", 8) * world
        if eval_batch % eval_generations:
            key = "per_device_eval_batch_size" if "per_device_eval_batch_size" in trainer else "num_generations_eval"
            raise loaded.error(("trainer", key), f"the evaluation batch (per_device_eval_batch_size "
                               f"{trainer.get('per_device_eval_batch_size', 8)} x world size {world} = {eval_batch}) "
                               f"is not a multiple of the generations per evaluation prompt ({eval_generations}: "
                               "num_generations_eval, else num_generations); set per_device_eval_batch_size to a "
                               f"multiple of {eval_generations // math.gcd(eval_generations, world)}, or "
                               "num_generations_eval to a divisor of it")
    if trainer.get("log_completions_hub_repo") and not trainer.get("log_completions"):
        raise loaded.error(("trainer", "log_completions_hub_repo"), "needs log_completions: true")
    if trainer.get("auto_find_batch_size"):
        raise loaded.error(("trainer", "auto_find_batch_size"), "not with GRPO or RLOO: halving the batch on "
                           "out-of-memory would split the groups of generations; lower batch.per_device instead")
    low, high = trainer.get("vllm_importance_sampling_clip_min"), trainer.get("vllm_importance_sampling_clip_max", 3.0)
    if low is not None and high is not None and low >= high:
        raise loaded.error(("trainer", "vllm_importance_sampling_clip_min"),
                           f"{low} must be below vllm_importance_sampling_clip_max ({high})")


def check_teacher(loaded) -> None:
    """A teacher, and what DistillationConfig / GKDConfig.__post_init__ refuse: beta (and GKD's
    lmbda) outside [0, 1]."""
    if loaded.spec.teacher is None:
        raise loaded.error(("teacher",), "distillation needs a teacher model: teacher: {name_or_path: ...}")
    defaults = {"beta": 1.0} if loaded.spec.method == "distill" else {"beta": 0.5, "lmbda": 0.5}  # TRL's
    for key, default in defaults.items():
        value = loaded.spec.trainer.get(key, default)
        if not 0.0 <= value <= 1.0:
            what = "the divergence's interpolation (0 forward KL, 1 reverse KL)" if key == "beta" else \
                "the fraction of batches the student answers itself"
            raise loaded.error(("trainer", key), f"{key} is {value}; it is {what}, in [0, 1]")


def check_online_dpo(loaded) -> None:
    check_rewards_given(loaded)
    trainer = loaded.spec.trainer
    new, length = trainer.get("max_new_tokens", 64), trainer.get("max_length", 512)
    if new >= length:
        raise loaded.error(("trainer", "max_new_tokens"), f"max_new_tokens ({new}) >= max_length ({length}): every "
                           "prompt would be cut away in the forward pass (TRL only warns); raise max_length")
    if trainer.get("reward_model_path"):
        raise loaded.error(("trainer", "reward_model_path"), "posttrain scores the pairs with its rewards: "
                           "rewards: [{name: reward_model, path: ...}] (or a verifier, or llm_judge)")


def _online_passes(trainer: dict) -> float:
    """Online DPO: generating two completions per prompt, training on both, and the reference
    model's forward (no reference with LoRA: the adapter is switched off instead; same cost)."""
    return 1.0 + 3.0 + 1.0


def _distill_passes(trainer: dict) -> float:
    """On-policy distillation: the student generates, the teacher scores (a forward of its own,
    counted in the student's units: an estimate), the student trains."""
    return 1.0 + 1.0 + 3.0


def check_reward_model(loaded) -> None:
    """A reward model scores sequences and cannot generate: the eval block's generation-based
    evaluation does not apply (the run reports pairwise accuracy on held-out pairs instead)."""
    if loaded.spec.eval is not None and loaded.spec.eval.test_time is None:
        raise loaded.error(("eval",), "a reward model does not generate: its eval block can only give test_time: "
                           "curves of the model the run starts from, ranked by the trained one (docs/verifiers.md); "
                           "otherwise remove it: the run reports pairwise accuracy on data.eval (or "
                           "data.eval_fraction / eval_size) pairs")


def check_prm(loaded) -> None:
    """A process reward model rates steps and cannot generate (as a reward model)."""
    if loaded.spec.eval is not None and loaded.spec.eval.test_time is None:
        raise loaded.error(("eval",), "a process reward model does not generate: its eval block can only give "
                           "test_time: curves of the model the run starts from, guided by the trained PRM "
                           "(docs/verifiers.md); otherwise remove it: the run reports step accuracy and first-wrong-"
                           "step accuracy on data.eval (or data.eval_fraction / eval_size) records")
    threshold = loaded.spec.trainer.get("threshold", 0.5)
    if not 0 < threshold < 1:
        raise loaded.error(("trainer", "threshold"), f"threshold is {threshold}; a probability between 0 and 1")
    head = loaded.spec.trainer.get("head", "token_classification")
    if head not in ("token_classification", "causal_lm"):
        raise loaded.error(("trainer", "head"), f"head is {head!r}; token_classification (a two-label classifier "
                           "head) or causal_lm (the LM writes positive_token / negative_token at each step)")
    tag, separator = loaded.spec.trainer.get("step_tag"), loaded.spec.trainer.get("step_separator", "\n")
    if tag is not None and not (tag and separator.startswith(tag)):
        raise loaded.error(("trainer", "step_tag"), f"step_tag {tag!r} must begin step_separator {separator!r} "
                           "(the label sits on the tag; the rest of the separator follows it)")
    if loaded.spec.trainer.get("positive_token", "+") == loaded.spec.trainer.get("negative_token", "-"):
        raise loaded.error(("trainer", "negative_token"), "positive_token and negative_token must differ")


def check_kto(loaded) -> None:
    """What TRL's KTOTrainer would otherwise reject with a traceback once the model is loaded."""
    trainer = loaded.spec.trainer
    for key in ("desirable_weight", "undesirable_weight"):
        if trainer.get(key, 1.0) <= 0:
            raise loaded.error(("trainer", key), f"{key} must be > 0 (it scales that side's loss)")
    if trainer.get("loss_type", "kto") == "apo_zero_unpaired":
        return  # the only KTO loss without the KL estimate
    if trainer.get("train_sampling_strategy", "sequential") != "sequential":
        raise loaded.error(("trainer", "train_sampling_strategy"), "KTO's KL estimate needs sequential batches "
                           "(posttrain shuffles the records itself); remove the key or use "
                           "loss_type: apo_zero_unpaired")


def _with_reference(trainer: dict) -> float:
    """DPO / KTO: forward and backward on the policy, a forward of the reference model (none
    when its log-probabilities are precomputed once, which counts as one forward per token)."""
    return 3.0 + 1.0


def _grpo_passes(trainer: dict) -> float:
    """GRPO: one forward per token to generate it (prompt prefill included), forward and backward
    to train on it, a reference forward when beta > 0 and an old-policy forward when the batch
    is reused (num_iterations > 1)."""
    return 1.0 + 3.0 + (trainer.get("beta", 0.0) > 0) + (trainer.get("num_iterations", 1) > 1)


METHODS: dict[str, Method] = {
    "sft": Method(
        name="sft", summary="supervised fine-tuning (TRL SFTTrainer)",
        config=("trl.trainer.sft_config", "SFTConfig"), data="sft", trainer="posttrain.trainers.sft",
    ),
    "dpo": Method(
        name="dpo", summary="direct preference optimisation on pairs (TRL DPOTrainer)",
        config=("trl.trainer.dpo_config", "DPOConfig"), data="preference", trainer="posttrain.trainers.dpo",
        keys=frozenset({"on_policy"}), checks=(check_dpo_losses,),
        passes=_with_reference,
    ),
    "kto": Method(
        name="kto", summary="Kahneman-Tversky optimisation on unpaired labelled completions (TRL KTOTrainer)",
        config=("trl.trainer.kto_config", "KTOConfig"), data="unpaired", trainer="posttrain.trainers.kto",
        checks=(check_kto,),
        passes=_with_reference,
    ),
    "reward": Method(
        name="reward", summary="reward model on preference pairs: one score per sequence (TRL RewardTrainer)",
        config=("trl.trainer.reward_config", "RewardConfig"), data="preference", trainer="posttrain.trainers.reward",
        keys=frozenset({"on_policy"}), checks=(check_reward_model,), model="sequence_classification",
    ),
    "prm": Method(
        name="prm", summary="process reward model on step-labelled solutions: a label per step (posttrain's own, "
                            "on transformers' Trainer)",
        config=("posttrain.trainers.prm_config", "PRMConfig"), data="steps", trainer="posttrain.trainers.prm",
        checks=(check_prm,), model="token_classification",
    ),
    "rlvr": Method(
        name="rlvr", summary="RL with verifiable rewards: GRPO and its variants (TRL GRPOTrainer)",
        config=("trl.trainer.grpo_config", "GRPOConfig"), data="task", trainer="posttrain.trainers.rlvr",
        keys=frozenset({"rewards", "dynamic_sampling", "reward_preflight", "eval_greedy", "rollouts"}),
        managed={"reward_weights": "set from each reward's weight: rewards: [{name: ..., weight: W}]",
                 "chat_template_kwargs": "set from model.chat_template_kwargs (every rendering uses them)"},
        checks=(check_rewards_given, check_generation_groups),
        passes=_grpo_passes, tokens_in_state=True, generates=True,
    ),
    "rloo": Method(
        name="rloo", summary="REINFORCE leave-one-out with verifiable rewards (TRL RLOOTrainer)",
        config=("trl.trainer.rloo_config", "RLOOConfig"), data="task", trainer="posttrain.trainers.rloo",
        keys=frozenset({"rewards", "reward_preflight", "rollouts"}),
        managed={"reward_weights": "set from each reward's weight: rewards: [{name: ..., weight: W}]",
                 "chat_template_kwargs": "set from model.chat_template_kwargs (every rendering uses them)"},
        checks=(check_rewards_given, check_generation_groups),
        passes=_grpo_passes, tokens_in_state=True, generates=True,
    ),
    "orpo": Method(
        name="orpo", summary="odds-ratio preference optimisation: SFT and preference in one loss, no reference "
                             "model (TRL ORPOTrainer, experimental)",
        config=("trl.experimental.orpo.orpo_config", "ORPOConfig"), data="preference", trainer="posttrain.trainers.orpo",
        counts_tokens=False, trl_status="experimental",
    ),
    "cpo": Method(
        name="cpo", summary="contrastive preference optimisation, and SimPO with loss_type: simpo (TRL CPOTrainer, "
                            "experimental)",
        config=("trl.experimental.cpo.cpo_config", "CPOConfig"), data="preference", trainer="posttrain.trainers.cpo",
        counts_tokens=False, trl_status="experimental",
    ),
    "online_dpo": Method(
        name="online_dpo", summary="online DPO: two completions per prompt sampled from the policy, ranked by "
                                   "posttrain's rewards (a verifier, a reward model, an LLM judge) (TRL "
                                   "OnlineDPOTrainer, experimental)",
        config=("trl.experimental.online_dpo.online_dpo_config", "OnlineDPOConfig"), data="prompts",
        trainer="posttrain.trainers.online_dpo", keys=frozenset({"rewards"}),
        managed={"reward_weights": "set from each reward's weight: rewards: [{name: ..., weight: W}]"},
        checks=(check_online_dpo,), passes=_online_passes, counts_tokens=False, generates=True,
        trl_status="experimental",
    ),
    "distill": Method(
        name="distill", summary="on-policy distillation: the student samples, a teacher model's token "
                                "distributions are the target (TRL DistillationTrainer)",
        config=("trl.trainer.distillation_config", "DistillationConfig"), data="prompts",
        trainer="posttrain.trainers.distill", keys=frozenset({"teacher"}),
        managed={"teacher_model_name_or_path": "use the teacher block: teacher: {name_or_path: ...}",
                 "teacher_model_init_kwargs": "use the teacher block (dtype, revision, gguf_file)",
                 "chat_template_kwargs": "set from model.chat_template_kwargs (every rendering uses them)"},
        checks=(check_teacher,), passes=_distill_passes, tokens_in_state=True, generates=True,
    ),
    "gkd": Method(
        name="gkd", summary="generalised knowledge distillation: SFT data, a fraction lmbda of it answered by the "
                            "student itself, a teacher's distributions as the target (TRL GKDTrainer, experimental)",
        config=("trl.experimental.gkd.gkd_config", "GKDConfig"), data="sft", trainer="posttrain.trainers.gkd",
        keys=frozenset({"teacher"}),
        managed={"teacher_model_name_or_path": "use the teacher block: teacher: {name_or_path: ...}",
                 "teacher_model_init_kwargs": "use the teacher block (dtype, revision, gguf_file)"},
        checks=(check_teacher,), passes=_distill_passes, counts_tokens=False, trl_status="experimental",
        samples_some=True,
    ),
}


def model_kind(method: str, trainer: dict) -> str:
    """The model kind a run trains (a key of MODEL_KINDS): its method's, except a process reward
    model with `head: causal_lm`, which trains the causal LM to write a positive or negative
    token at each step (Math-Shepherd's and OpenRLHF's PRMs) instead of a classifier head."""
    if method == "prm" and trainer.get("head", "token_classification") == "causal_lm":
        return "causal_lm"
    return METHODS[method].model


def methods_taking(key: str) -> list[str]:
    return [name for name, method in METHODS.items() if key in method.keys]
