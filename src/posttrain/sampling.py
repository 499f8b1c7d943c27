"""Generate answers to chat prompts and score them with a reward: the one sampling path shared by
evaluation, on-policy preference pairs, tree building and test-time search.

Generation runs posttrain's own decoding loop over the model's forward (`decode`), not
`model.generate`: each prompt is tokenised once and prefilled once however many samples it gets
(the cache is copied to the n samples, as a shared prefix), and a row that has finished leaves
the batch at once instead of being computed to the end of the longest row. Greedy outputs equal
`model.generate`'s token for token (tests/unit/test_sampling.py); sampling draws from the same
distribution (the model's generation config's temperature, top-k and top-p, applied by
transformers' own warpers, in generate's order) but not the same random stream. A generation
config with settings the loop does not apply (a repetition penalty, say) goes through
`model.generate` instead. bench/generation.py measures the two side by side.

A reward is referenced the same way everywhere: a registered name or dotted path, or a mapping
with its options (`{name: math, timeout: 2}`), as in a recipe's `rewards:` list.
"""

from __future__ import annotations

from dataclasses import dataclass

from posttrain.chat_templates import render
from posttrain.rewards import build_reward_ref

# Generation-config fields the loop applies; any other field away from generate's default sends
# the call to model.generate.
_APPLIED = {"temperature", "top_k", "top_p", "do_sample", "max_length", "max_new_tokens", "eos_token_id",
            "pad_token_id", "bos_token_id", "use_cache", "num_return_sequences", "return_dict_in_generate",
            "output_scores", "output_logits", "output_attentions", "output_hidden_states", "num_beams",
            "cache_implementation", "transformers_version", "decoder_start_token_id", "early_stopping",
            "length_penalty", "num_beam_groups", "diversity_penalty"}


def settings_not_applied(config, applied: set[str], neutral: dict | None = None) -> list[str]:
    """Names of a GenerationConfig's fields set away from generate's defaults (and from
    `neutral`: values that change nothing, such as a repetition penalty of 1.0), other than the
    `applied` ones: what posttrain's loop would not reproduce."""
    defaults = config._get_default_generation_params() if hasattr(config, "_get_default_generation_params") else {}
    neutral = neutral or {}
    problems = []
    for key, value in config.to_diff_dict().items():
        if key in applied or key.startswith("_"):
            continue
        if value is None or value == defaults.get(key, None) or value in ({}, [], False):
            continue
        if key in neutral and value == neutral[key]:
            continue
        problems.append(key)
    return problems


def unsupported_settings(model) -> list[str]:
    """The model's generation-config settings that posttrain's loop would not apply (so
    generation falls back to model.generate): names of fields set away from generate's
    defaults, other than those the loop applies."""
    config = getattr(model, "generation_config", None)
    if config is None:
        return []
    problems = settings_not_applied(config, _APPLIED)
    if getattr(config, "num_beams", 1) not in (None, 1):
        problems.append("num_beams")
    return problems


def as_messages(prompt) -> list[dict]:
    """A prompt as a conversation: a text prompt (IFEval's rows, a plain-text dataset) is the
    user's turn.

    >>> as_messages("Write a haiku.")
    [{'role': 'user', 'content': 'Write a haiku.'}]
    """
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _stop_ids(model, tokenizer) -> set[int]:
    return stop_ids(getattr(model, "generation_config", None), tokenizer)


def stop_ids(config, tokenizer) -> set[int]:
    """The end tokens of a generation config (None: the tokenizer's)."""
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


def warpers_for(config) -> list | None:
    """transformers' own warpers for a GenerationConfig (or anything with its sampling fields),
    in generate's order: temperature, top-k, top-p, min-p; None where it is greedy."""
    from transformers.generation import (MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper,
                                         TopPLogitsWarper)

    if not config.do_sample:
        return None
    warpers = []
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.top_k is not None and config.top_k != 0:
        warpers.append(TopKLogitsWarper(top_k=config.top_k, min_tokens_to_keep=1))
    if config.top_p is not None and config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=config.top_p, min_tokens_to_keep=1))
    if config.min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=config.min_p, min_tokens_to_keep=1))
    return warpers


def _warpers(model, temperature: float, top_p: float):
    """The warpers for sampling at `temperature` and `top_p` with the model's generation-config
    top-k (generate's default 50)."""
    from types import SimpleNamespace

    config = getattr(model, "generation_config", None)
    top_k = getattr(config, "top_k", None) if config is not None else None
    return warpers_for(SimpleNamespace(do_sample=True, temperature=temperature, top_p=top_p, min_p=None,
                                       top_k=50 if top_k is None else top_k))


class _Buffers:
    """A cache layer (transformers' DynamicLayer) that writes into buffers allocated once for the
    whole generation, instead of concatenating the cache at every new token."""

    @staticmethod
    def layer(capacity: int):
        from transformers.cache_utils import DynamicLayer

        class BufferedLayer(DynamicLayer):
            def __init__(self):
                super().__init__()
                self.capacity, self.length = capacity, 0

            def lazy_initialization(self, key_states, value_states):
                self.dtype, self.device = key_states.dtype, key_states.device
                batch, heads, _, width = key_states.shape
                self._keys = key_states.new_empty((batch, heads, self.capacity, width))
                self._values = value_states.new_empty((batch, value_states.shape[1], self.capacity, value_states.shape[-1]))
                self.is_initialized = True

            def _views(self):
                self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

            def update(self, key_states, value_states, *args, **kwargs):
                if not self.is_initialized:
                    self.lazy_initialization(key_states, value_states)
                end = self.length + key_states.shape[-2]
                if end > self.capacity:
                    raise RuntimeError(f"posttrain's generation cache holds {self.capacity} tokens; {end} asked")
                self._keys[:, :, self.length : end] = key_states
                self._values[:, :, self.length : end] = value_states
                self.length = end
                self._views()
                return self.keys, self.values

            def get_seq_length(self):
                return self.length

            def crop(self, tokens_to_remove):
                if tokens_to_remove < 0 and self.is_initialized:
                    self.length = max(0, self.length + tokens_to_remove)
                    self._views()

            def batch_repeat_interleave(self, repeats):
                if self.length:
                    self._keys = self._keys.repeat_interleave(repeats, dim=0)
                    self._values = self._values.repeat_interleave(repeats, dim=0)
                    self._views()

            def batch_select_indices(self, indices):
                if self.length:
                    self._keys, self._values = self._keys[indices], self._values[indices]
                    self._views()

        return BufferedLayer()


def _cache(model, capacity: int):
    """A DynamicCache for `model` whose full-attention layers write into preallocated buffers;
    transformers' own layers where the model has others (sliding windows, say)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=model.config)
    if cache.layers and all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_Buffers.layer(capacity) for _ in cache.layers]
    return cache


def decode(model, input_ids, attention_mask, *, max_new_tokens: int, n: int = 1, stops: set[int],
           warpers: list | None = None) -> list[list[int]]:
    """New tokens for each left-padded row of `input_ids`, n per row (row-major: the n samples of
    row 0 first). Greedy when `warpers` is None, else sampled after the warpers. A row ends at a
    stop token (kept in its list) or at max_new_tokens. Finished rows leave the batch once a
    quarter of it has finished (a copy of the cache each time, so not at every row)."""
    import torch

    with torch.inference_mode():
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = _cache(model, input_ids.shape[1] + max_new_tokens)
        prefill = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                       past_key_values=cache, use_cache=True)
        try:  # the last position's logits only: a prompt batch's full logits can be gigabytes
            out = model(**prefill, logits_to_keep=1)
        except TypeError:  # a model whose forward does not take it (with a fresh cache)
            out = model(**{**prefill, "past_key_values": _cache(model, input_ids.shape[1] + max_new_tokens)})
        cache, logits = out.past_key_values, out.logits[:, -1, :].float()
        if n > 1:  # one prefill per prompt, its cache shared by its n samples
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
            attention_mask = attention_mask.repeat_interleave(n, dim=0)
            positions = positions.repeat_interleave(n, dim=0)
        rows = torch.arange(attention_mask.shape[0])  # the output row of each batch row
        tokens: list[list[int]] = [[] for _ in range(len(rows))]
        live = torch.ones(len(rows), dtype=torch.bool)  # rows still generating
        next_position = positions[:, -1:] + 1
        stop = torch.tensor(sorted(stops), dtype=torch.long, device=attention_mask.device) if stops else None
        for step in range(max_new_tokens):
            if warpers is None:
                chosen = logits.argmax(dim=-1)
            else:
                scores = logits
                for warper in warpers:
                    scores = warper(None, scores)
                chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            picked = chosen.tolist()
            for i in live.nonzero().squeeze(1).tolist():
                tokens[int(rows[i])].append(picked[i])
            if step == max_new_tokens - 1:
                break
            if stop is not None:
                live &= ~torch.isin(chosen, stop).cpu()
            remaining = int(live.sum())
            if remaining == 0:
                break
            if remaining <= 3 * len(rows) // 4:  # drop the finished rows
                keep = live.nonzero().squeeze(1)
                on_device = keep.to(chosen.device)
                cache.batch_select_indices(on_device)
                rows, live = rows[keep], live[keep]
                chosen, attention_mask, next_position = chosen[on_device], attention_mask[on_device], next_position[on_device]
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=1)
            out = model(input_ids=chosen[:, None], attention_mask=attention_mask, position_ids=next_position,
                        past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1, :].float()
            next_position = next_position + 1
    return tokens


def _length(row: list[int], stops: set[int], pad: int) -> int:
    """Generated tokens in a row: up to and including its first end token (generate pads after it)."""
    for i, token in enumerate(row):
        if token in stops or token == pad:
            return i + 1
    return len(row)


def _pad_left(rows: list[list[int]], pad: int, device):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def generate_answers(model, tokenizer, prompts: list, *, max_new_tokens: int, batch_size: int,
                     n: int = 1, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                     prefixes: list[str] | None = None, trim_unfinished: bool = False,
                     stats: dict | None = None, progress=None, plain_generate: bool = False) -> list[list[str]]:
    """n completions per chat prompt: greedy when temperature is 0, else sampled (seeded).
    `prefixes` continue a partly written assistant answer (one per prompt). With
    `trim_unfinished`, a completion that max_new_tokens cut loses its last line, which may be
    cut mid-way (`Answer: 14` of `Answer: 148`), unless that line is all it has: step-by-step
    sampling reads whole lines only. `batch_size` counts prompts (each with its n samples).
    `stats`, if given, gets "generated_tokens" (up to and including each end token) added;
    `progress(done, total)`, if given, is called after each batch (prompts answered so far).
    `plain_generate` uses model.generate for every batch (GenerateEngine)."""
    import torch

    texts = [render(tokenizer, as_messages(p), add_generation_prompt=True) for p in prompts]
    if prefixes is not None:
        texts = [t + prefix for t, prefix in zip(texts, prefixes)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []  # once, not per batch
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # less padding per batch
    answers: list[list[str]] = [[] for _ in texts]
    stops = _stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(stops), 0)
    fallback = plain_generate or unsupported_settings(model)
    torch.manual_seed(seed)
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        input_ids, mask = _pad_left([ids[i] for i in batch], pad, model.device)
        if fallback:
            sampling = ({"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0
                        else {"do_sample": False})
            with torch.no_grad():
                output = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                        num_return_sequences=n, pad_token_id=pad, **sampling)
            generated = [row.tolist() for row in output[:, input_ids.shape[1]:]]
        else:
            generated = decode(model, input_ids, mask, max_new_tokens=max_new_tokens, n=n, stops=stops,
                               warpers=_warpers(model, temperature, top_p) if temperature > 0 else None)
        if stats is not None:
            stats["generated_tokens"] = stats.get("generated_tokens", 0) + sum(_length(row, stops, pad) for row in generated)
        decoded = tokenizer.batch_decode(generated, skip_special_tokens=True)
        if trim_unfinished:
            ended = [any(t in stops or t == pad for t in row) for row in generated]
            decoded = [text if done or "\n" not in text.rstrip("\n") else text[: text.rstrip("\n").rfind("\n") + 1]
                       for text, done in zip(decoded, ended)]
        for j, i in enumerate(batch):
            answers[i] = decoded[j * n : (j + 1) * n]
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    return answers


VLLM_DEFAULTS = {"gpu_memory_utilization": 0.5, "enable_prefix_caching": True}  # the trained model may still be on the GPU


def vllm_arguments(model_dir: str, generation_config, tokenizer, *, max_new_tokens: int, n: int, temperature: float,
                   top_p: float, seed: int, options: dict | None = None) -> tuple[dict, dict]:
    """(vllm.LLM's keyword arguments, vllm.SamplingParams') for the same sampling as the HF path:
    greedy at temperature 0, else the model's generation-config top-k (generate's default 50)
    with the given temperature and top-p; stop at the same end tokens."""
    top_k = getattr(generation_config, "top_k", None) if generation_config is not None else None
    llm = {"model": model_dir, "tokenizer": model_dir, "seed": seed, **VLLM_DEFAULTS, **(options or {})}
    params = {"n": n, "max_tokens": max_new_tokens, "seed": seed, "skip_special_tokens": True,
              "stop_token_ids": sorted(stop_ids(generation_config, tokenizer))}
    if temperature > 0:
        params.update(temperature=temperature, top_p=top_p, top_k=50 if top_k is None else (top_k or -1))
    else:
        params.update(temperature=0.0, top_p=1.0, top_k=-1)
    return llm, params


def vllm_answers(outputs, tokenizer, n: int, trim_unfinished: bool) -> list[list[str]]:
    """vLLM's request outputs (in prompt order) as answers, decoded by posttrain's tokenizer as the
    HF path decodes them."""
    answers = []
    for output in outputs:
        texts = []
        for completion in output.outputs[:n]:
            text = tokenizer.decode(list(completion.token_ids), skip_special_tokens=True)
            if trim_unfinished and completion.finish_reason == "length" and "\n" in text.rstrip("\n"):
                text = text[: text.rstrip("\n").rfind("\n") + 1]
            texts.append(text)
        answers.append(texts)
    return answers


def generate_answers_vllm(model_dir: str, tokenizer, prompts: list, *, max_new_tokens: int, n: int = 1,
                          temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
                          prefixes: list[str] | None = None, trim_unfinished: bool = False,
                          options: dict | None = None) -> list[list[str]]:
    """generate_answers through vLLM (eval.engine: vllm): the same prompt tokens (posttrain's
    tokenizer and chat template), sampling settings and answers; vLLM batches by itself. The
    engine is torn down after, so the GPU memory is free again."""
    import gc

    import torch
    from vllm import LLM, SamplingParams

    texts = [render(tokenizer, as_messages(p), add_generation_prompt=True) for p in prompts]
    if prefixes is not None:
        texts = [t + prefix for t, prefix in zip(texts, prefixes)]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    try:
        from transformers import GenerationConfig

        generation_config = GenerationConfig.from_pretrained(model_dir)
    except OSError:  # none saved: generate's defaults
        generation_config = None
    llm_args, params = vllm_arguments(model_dir, generation_config, tokenizer, max_new_tokens=max_new_tokens, n=n,
                                      temperature=temperature, top_p=top_p, seed=seed, options=options)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    llm = LLM(**llm_args)
    try:
        outputs = llm.generate([{"prompt_token_ids": row} for row in ids], SamplingParams(**params), use_tqdm=False)
    finally:
        del llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return vllm_answers(outputs, tokenizer, n, trim_unfinished)


def score_answers(reward, records: list[dict], answers: list[list[str]], extra: dict | None = None,
                  max_completion_length: int | None = None) -> list[list[float]]:
    """Each answer's score under `reward` (a name, or a reference with options); the records'
    columns reach the reward as keyword arguments, as in RLVR, with `extra` (a column: one value
    per answer, in order). An abstention (None) scores 0."""
    reward = build_reward_ref(reward, max_completion_length)
    flat = [a for group in answers for a in group]
    columns = {k: [r.get(k) for r, group in zip(records, answers) for _ in group]
               for k in records[0] if k not in {"completion"}}
    columns["prompts"] = columns.pop("prompt")
    columns.update(extra or {})
    scores = iter(reward(flat, **columns))
    return [[float(next(scores) or 0.0) for _ in group] for group in answers]


# ----------------------------------------------------------------------------- engines
#
# One interface for every caller that generates (evaluation, test-time search, tree building,
# on-policy pairs, the reward preflight, GRPO's rollouts): `engine.generate(prompts, n, sampling,
# prefixes)`. Which engine runs is chosen once, from the recipe (recipe/device.eval_engine, then
# make_engine); the callers do not branch on it. As nanochat's Engine and verl's rollout classes, an engine owns how tokens are
# produced, not what is done with them.


@dataclass(frozen=True)
class Sampling:
    """How completions are drawn: greedy at temperature 0, else sampled (seeded)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0


class Engine:
    """generate(prompts, n, sampling, prefixes) -> n answers per prompt (text)."""

    name = ""

    def generate(self, prompts: list, n: int, sampling: Sampling, prefixes: list[str] | None = None, *,
                 trim_unfinished: bool = False, stats: dict | None = None, progress=None) -> list[list[str]]:
        raise NotImplementedError


class LoopEngine(Engine):
    """posttrain's decoding loop (`decode`) over a transformers model in memory: one prefill per
    prompt shared by its n samples, finished rows leaving the batch. A generation config with
    settings the loop does not apply goes through model.generate (generate_answers)."""

    name = "posttrain"
    plain = False  # GenerateEngine: model.generate for every call

    def __init__(self, model, tokenizer, batch_size: int):
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def generate(self, prompts, n, sampling, prefixes=None, *, trim_unfinished=False, stats=None, progress=None):
        return generate_answers(self.model, self.tokenizer, prompts, max_new_tokens=sampling.max_new_tokens,
                                batch_size=self.batch_size, n=n, temperature=sampling.temperature,
                                top_p=sampling.top_p, seed=sampling.seed, prefixes=prefixes,
                                trim_unfinished=trim_unfinished, stats=stats, progress=progress,
                                plain_generate=self.plain)


class GenerateEngine(LoopEngine):
    """transformers' model.generate, batch by batch: the fallback, and the reference the loop is
    tested against."""

    name = "generate"
    plain = True


class VLLMEngine(Engine):
    """vLLM over a saved model directory (it loads the weights itself; GPU only)."""

    name = "vllm"

    def __init__(self, model_dir: str, tokenizer, options: dict | None = None):
        self.model_dir, self.tokenizer, self.options = model_dir, tokenizer, options

    def generate(self, prompts, n, sampling, prefixes=None, *, trim_unfinished=False, stats=None, progress=None):
        return generate_answers_vllm(self.model_dir, self.tokenizer, prompts, max_new_tokens=sampling.max_new_tokens,
                                     n=n, temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                                     prefixes=prefixes, trim_unfinished=trim_unfinished, options=self.options)


ENGINES = {"hf": LoopEngine, "generate": GenerateEngine, "vllm": VLLMEngine}  # eval.engine's values


def make_engine(name: str, *, model=None, tokenizer, batch_size: int = 16, model_dir: str | None = None,
                options: dict | None = None) -> Engine:
    """The engine `name` (recipe/device.py's eval_engine chooses it): vllm needs `model_dir`;
    the others a model in memory."""
    if name == "vllm":
        if model_dir is None:
            raise ValueError("the vllm engine generates from a saved model directory")
        return VLLMEngine(model_dir, tokenizer, options)
    return ENGINES[name](model, tokenizer, batch_size)


def as_engine(model_or_engine, tokenizer, batch_size: int = 16) -> Engine:
    """An engine as it is, or a transformers model in memory behind posttrain's loop: what the
    functions that generate take (build_trees, sample_pairs, ModelPolicy), so a caller passes a
    model (the common case) or the engine its recipe chose."""
    if isinstance(model_or_engine, Engine):
        return model_or_engine
    return LoopEngine(model_or_engine, tokenizer, batch_size)
