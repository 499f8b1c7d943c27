"""On-policy preference pairs: sample answers from the model being trained, verify them, and
pair a correct answer (chosen) with an incorrect one (rejected) for the same prompt.

O1 Replication Journey's DPO stage sampled 20 answers per question and kept 5 pairs; Tulu 3's
on-policy preference data is built the same way with a judge instead of a verifier. Prompts
whose answers are all correct or all wrong give no pair and are counted.
"""

from __future__ import annotations

import random
from collections import Counter

from posttrain.data.loading import rows_rendering
from posttrain.sampling import Sampling, as_engine, score_answers


def _prompt_messages(prompt) -> list[dict]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def _unique(texts: list[str]) -> list[str]:
    seen, kept = set(), []
    for text in texts:
        key = text.strip()
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def pair_answers(records: list[dict], answers: list[list[str]], scores: list[list[float]], pairs: int,
                 threshold: float, seed: int) -> tuple[list[dict], Counter]:
    """Pairs from scored answers: per prompt, up to `pairs` (correct, incorrect) combinations,
    each correct and each incorrect answer used as evenly as possible. Deterministic by seed."""
    rng = random.Random(f"on_policy/{seed}")
    out, stats = [], Counter(prompts=len(records))
    for record, group, group_scores in zip(records, answers, scores):
        good = _unique([a for a, s in zip(group, group_scores) if s >= threshold])
        bad = _unique([a for a, s in zip(group, group_scores) if s < threshold])
        if not good:
            stats["no correct answer"] += 1
            continue
        if not bad:
            stats["all answers correct"] += 1
            continue
        rng.shuffle(good)
        rng.shuffle(bad)
        combinations = [(good[i % len(good)], bad[i % len(bad)]) for i in range(len(good) * len(bad))]
        chosen_pairs = list(dict.fromkeys(combinations))[:pairs]
        for chosen, rejected in chosen_pairs:
            out.append({"prompt": _prompt_messages(record["prompt"]),
                        "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": rejected}]})
        stats["prompts with pairs"] += 1
    stats["pairs"] = len(out)
    return out, stats


def sample_pairs(model, tokenizer, records: list[dict], spec) -> tuple[list[dict], Counter]:
    """Generate `spec.samples` answers per task record with `model` (a model in memory, or an
    engine: sampling.as_engine), score them with `spec.reward`, and pair them (see pair_answers)."""
    prompts = [_prompt_messages(r["prompt"]) for r in records]
    with rows_rendering(tokenizer, records, "on-policy prompts") as row:  # sampled and trained in the rows' mode
        sampling = Sampling(spec.max_new_tokens, spec.temperature, spec.top_p, spec.seed)
        answers = as_engine(model, tokenizer, spec.batch_size).generate(prompts, spec.samples, sampling)
    scores = score_answers(spec.reward, records, answers)
    pairs, stats = pair_answers(records, answers, scores, spec.pairs, spec.threshold, spec.seed)
    return ([{**pair, "chat_template_kwargs": row} for pair in pairs] if row else pairs), stats


def agree_across_ranks(value):
    """Rank 0's value on every rank (sampling on GPUs is not bitwise reproducible across ranks)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
