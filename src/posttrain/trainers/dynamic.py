"""DAPO's dynamic sampling on top of TRL's GRPOTrainer (Yu et al., 2025, arXiv 2503.14476).

A group of completions whose rewards all agree has advantage 0 everywhere: it adds no gradient,
only dilutes the batch. With `dynamic_sampling: {max_retries: N}` in an rlvr recipe, after each
generation those groups are dropped and replaced by groups with a spread, generated from fresh
prompts (a separately seeded pass over the training prompts), up to N extra generation rounds.
If the batch is still short after N rounds, the dropped groups fill it back (the batch size never
changes). Logged per generation: `dynamic_sampling/zero_std_groups_before` and `..._after` (the
fractions of zero-variance groups), and `dynamic_sampling/extra_rounds`. Every rank takes the same
number of rounds (they agree through an all-reduce), which the collective ops inside generation
need. Each process's share of a generation batch must hold whole groups.
"""

from __future__ import annotations

import torch

from posttrain.trainers.faults import all_agree

TEXT_KEYS_LEFT = ("prompt_ids", "prompt_mask")  # left-padded
TEXT_KEYS_RIGHT = ("completion_ids", "completion_mask", "old_per_token_logps", "ref_per_token_logps",
                   "sampling_per_token_logps", "importance_sampling_ratio", "tool_mask")
SCALAR_KEYS = ("num_items_in_batch",)


def zero_std_groups(advantages: torch.Tensor, generations: int) -> torch.Tensor:
    """A bool per group of `generations` consecutive rows: True when all its advantages are 0."""
    return advantages.view(-1, generations).abs().amax(dim=1) == 0


def _pad(tensor: torch.Tensor, length: int, left: bool, value) -> torch.Tensor:
    if tensor.dim() < 2 or tensor.shape[1] == length:
        return tensor
    pad = torch.full((tensor.shape[0], length - tensor.shape[1]), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([pad, tensor] if left else [tensor, pad], dim=1)


def take_groups(parts: list[tuple[dict, list[int]]], generations: int, pad_id: int) -> dict:
    """One output dict from chosen groups of several outputs: rows concatenated, prompt tensors
    left-padded and completion tensors right-padded to common lengths."""
    keys = set(parts[0][0])
    unsupported = keys - set(TEXT_KEYS_LEFT) - set(TEXT_KEYS_RIGHT) - set(SCALAR_KEYS) - {"advantages"}
    if unsupported:
        raise ValueError(f"dynamic sampling supports text-only GRPO; this batch also has {sorted(unsupported)}")
    merged = {}
    for key in keys - set(SCALAR_KEYS):
        pieces = []
        for out, groups in parts:
            if not groups:
                continue
            rows = torch.tensor([g * generations + i for g in groups for i in range(generations)],
                                device=out[key].device)
            pieces.append(out[key].index_select(0, rows))
        if key in TEXT_KEYS_LEFT or key in TEXT_KEYS_RIGHT:
            length = max(p.shape[1] for p in pieces) if pieces[0].dim() > 1 else None
            left = key in TEXT_KEYS_LEFT
            value = pad_id if key in ("prompt_ids", "completion_ids") else 0
            pieces = [_pad(p, length, left, value) for p in pieces] if length else pieces
        merged[key] = torch.cat(pieces, dim=0)
    return merged


def dynamic_grpo_class(base):
    """A subclass of TRL's GRPOTrainer (`base`) with dynamic sampling."""

    class DynamicSamplingGRPOTrainer(base):
        def __init__(self, *args, max_retries: int = 0, **kwargs):
            super().__init__(*args, **kwargs)
            self.max_retries = max_retries
            self._fresh_iterator = None
            self._fresh_epoch = 0

        def _fresh_batch(self):
            from trl.trainer.utils import RepeatSampler

            while True:
                if self._fresh_iterator is None:
                    self._fresh_epoch += 1
                    loader = self._get_dataloader(
                        dataset=self.train_dataset, description="Dynamic sampling",
                        batch_size=self._train_batch_size * self.args.steps_per_generation,
                        sampler_fn=lambda dataset: RepeatSampler(
                            data_source=dataset, mini_repeat_count=self.num_generations,
                            batch_size=self.args.generation_batch_size // self.num_generations, repeat_count=1,
                            shuffle=True, seed=self.args.seed + 7919 * self._fresh_epoch),
                        is_training=True)
                    self._fresh_iterator = iter(loader)
                try:
                    return next(self._fresh_iterator)
                except StopIteration:
                    self._fresh_iterator = None

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training or self.max_retries <= 0:
                return out
            generations = self.num_generations
            zero = zero_std_groups(out["advantages"], generations)
            need = int(zero.numel())
            pool = [(out, [g for g in range(need) if not zero[g]])]
            have = len(pool[0][1])
            rounds = 0
            while rounds < self.max_retries and all_agree(have < need):
                rounds += 1
                fresh = super()._generate_and_score_completions(self._fresh_batch())
                fresh_zero = zero_std_groups(fresh["advantages"], generations)
                useful = [g for g in range(int(fresh_zero.numel())) if not fresh_zero[g]][: max(0, need - have)]
                pool.append((fresh, useful))
                have += len(useful)
            if have < need:  # still short: the zero-variance groups fill the batch back
                pool.append((out, [g for g in range(need) if zero[g]][: need - have]))
            merged = take_groups(pool, generations, self.processing_class.pad_token_id)
            mask = merged["completion_mask"] if "tool_mask" not in merged else merged["completion_mask"] * merged["tool_mask"]
            merged["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
            after = zero_std_groups(merged["advantages"], generations)
            metrics = self._metrics["train"]
            metrics["dynamic_sampling/zero_std_groups_before"].append(
                self.accelerator.gather(zero.float()).mean().item())
            metrics["dynamic_sampling/zero_std_groups_after"].append(
                self.accelerator.gather(after.float()).mean().item())
            metrics["dynamic_sampling/extra_rounds"].append(float(rounds))
            return merged

    return DynamicSamplingGRPOTrainer
