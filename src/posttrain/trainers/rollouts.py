"""GRPO's and RLOO's rollouts through posttrain's generation engine.

TRL's GRPOTrainer and RLOOTrainer generate in `_generate_single_turn`: vLLM, transformers'
continuous batching, or (the default, and the only one on CPU) a plain `model.generate` over the
whole left-padded batch, in which every prompt appears num_generations times. `engine_rollouts`
subclasses the trainer and overrides only that method's plain path: the same prompt ids, the
same end tokens and the same sampling settings (TRL's generation config: temperature, top-k,
top-p, min-p, applied by transformers' own warpers in generate's order), through
`sampling.decode`, which prefills each distinct prompt once for all its samples and drops
finished rows from the batch. TRL's loss, log-probabilities, rewards and metrics are untouched:
they are computed from the returned token ids as before.

Where the override cannot reproduce generate (vLLM, continuous batching, images, a repetition
penalty or any other generation setting the loop does not apply), TRL's own path runs, and the
first such call says why. Greedy rollouts equal TRL's token for token and sampled ones follow
the same distribution (tests/unit/test_rollouts.py); bench/grpo_step.py measures the step time.
"""

from __future__ import annotations

import inspect

# GenerationConfig fields the loop applies (the rest of TRL's generation kwargs must be at
# generate's defaults for the override to run).
_APPLIED = {"max_new_tokens", "do_sample", "pad_token_id", "bos_token_id", "eos_token_id", "temperature", "top_p",
            "top_k", "min_p", "disable_compile", "transformers_version"}


def unapplied(config) -> list[str]:
    """The settings of TRL's generation config that the loop would not apply."""
    from posttrain.sampling import settings_not_applied

    return settings_not_applied(config, _APPLIED, neutral={"repetition_penalty": 1.0})


def groups(prompt_ids: list[list[int]]) -> int:
    """n where the batch is runs of n identical prompts (TRL's RepeatSampler puts a prompt's
    generations side by side), else 1."""
    runs, start = [], 0
    for i in range(1, len(prompt_ids) + 1):
        if i == len(prompt_ids) or prompt_ids[i] != prompt_ids[start]:
            runs.append(i - start)
            start = i
    return runs[0] if runs and len(set(runs)) == 1 else 1


def decode_ids(model, prompt_ids: list[list[int]], *, max_new_tokens: int, stops: set[int], pad: int,
               warpers: list | None) -> list[list[int]]:
    """Completion ids for each row of `prompt_ids` (ending at its first stop token, kept), in
    order: a distinct prompt is prefilled once for its run of identical rows."""
    from posttrain.sampling import _pad_left, decode

    n = groups(prompt_ids)
    distinct = prompt_ids[::n]
    input_ids, mask = _pad_left(distinct, pad, model.device)
    return decode(model, input_ids, mask, max_new_tokens=max_new_tokens, n=n, stops=stops, warpers=warpers)


def engine_rollouts(base):
    """`base` (GRPOTrainer or RLOOTrainer, or a subclass) whose plain-generate rollouts run
    through posttrain's loop."""
    returns_logprobs = "num_generations" in inspect.signature(base._generate_single_turn).parameters

    class EngineRollouts(base):
        _said_fallback = False

        def _trl_path_reason(self, images, multimodal_fields) -> str | None:
            if self.use_vllm:
                return "vLLM generates (trainer.use_vllm)"
            if getattr(self, "use_transformers_continuous_batching", False):
                return "transformers' continuous batching generates"
            if images is not None and any(i is not None for i in images) or multimodal_fields:
                return "the prompts have images"
            settings = unapplied(self.generation_config)
            from posttrain.sampling import unsupported_settings

            settings += unsupported_settings(self.accelerator.unwrap_model(self.model))
            return f"generation settings the loop does not apply: {', '.join(settings)}" if settings else None

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, *args, **kwargs):
            import torch
            from trl.extras.profiling import profiling_context
            from trl.models import unwrap_model_for_generation

            from posttrain.sampling import warpers_for

            reason = self._trl_path_reason(images, multimodal_fields)
            if reason is not None:
                if not self._said_fallback:
                    print(f"posttrain: rollouts through TRL's own generation: {reason}", flush=True)
                    type(self)._said_fallback = True
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, *args, **kwargs)
            pad = self._tokenizer.pad_token_id
            with (
                profiling_context(self, "posttrain.decode"),
                unwrap_model_for_generation(
                    self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                    generation_kwargs=self.generation_kwargs,
                    gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs) as unwrapped,
                torch.no_grad(),
                self._dist.summon_full_params(self.model_wrapped, recurse=False),
            ):
                completion_ids = decode_ids(unwrapped, [list(p) for p in prompt_ids],
                                            max_new_tokens=self.max_completion_length, stops=set(self.eos_token_ids),
                                            pad=pad if pad is not None else self.eos_token_ids[0],
                                            warpers=warpers_for(self.generation_config))
            return (completion_ids, None) if returns_logprobs else completion_ids

    EngineRollouts.__name__ = EngineRollouts.__qualname__ = f"Engine{base.__name__}"
    return EngineRollouts
