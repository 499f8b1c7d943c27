"""Generate answers to chat prompts and score them with a reward: the one sampling path shared by
evaluation, on-policy preference pairs and tree building.

A reward is referenced the same way everywhere: a registered name or dotted path, or a mapping
with its options (`{name: math, timeout: 2}`), as in a recipe's `rewards:` list.
"""

from __future__ import annotations

from posttrain.rewards import build_reward_ref


def generate_answers(model, tokenizer, prompts: list, *, max_new_tokens: int, batch_size: int,
                     n: int = 1, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                     prefixes: list[str] | None = None, trim_unfinished: bool = False) -> list[list[str]]:
    """n completions per chat prompt: greedy when temperature is 0, else sampled (seeded).
    `prefixes` continue a partly written assistant answer (one per prompt). With
    `trim_unfinished`, a completion that max_new_tokens cut loses its last line, which may be
    cut mid-way (`Answer: 14` of `Answer: 148`), unless that line is all it has: step-by-step
    sampling reads whole lines only."""
    import torch

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    if prefixes is not None:
        texts = [t + prefix for t, prefix in zip(texts, prefixes)]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # less padding per batch
    answers: list[list[str]] = [[] for _ in texts]
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    torch.manual_seed(seed)
    model.eval()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            inputs = tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(model.device)
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                        pad_token_id=tokenizer.pad_token_id, **sampling)
            generated = output[:, inputs["input_ids"].shape[1] :]
            decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
            if trim_unfinished:
                stops = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
                ended = [any(int(t) in stops for t in row) for row in generated]
                decoded = [text if done or "\n" not in text.rstrip("\n") else text[: text.rstrip("\n").rfind("\n") + 1]
                           for text, done in zip(decoded, ended)]
            for j, i in enumerate(batch):
                answers[i] = decoded[j * n : (j + 1) * n]
    finally:
        tokenizer.padding_side = side
    return answers


def score_answers(reward, records: list[dict], answers: list[list[str]]) -> list[list[float]]:
    """Each answer's score under `reward` (a name, or a reference with options); the records'
    columns reach the reward as keyword arguments, as in RLVR. An abstention (None) scores 0."""
    reward = build_reward_ref(reward)
    flat = [a for group in answers for a in group]
    columns = {k: [r.get(k) for r, group in zip(records, answers) for _ in group]
               for k in records[0] if k not in {"completion"}}
    columns["prompts"] = columns.pop("prompt")
    scores = iter(reward(flat, **columns))
    return [[float(next(scores) or 0.0) for _ in group] for group in answers]
