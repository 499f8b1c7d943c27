"""`reward_model`: a trained model as a reward, wherever a reward goes (RLVR's `rewards:`, mixed
with verifiers by weight; evaluation's `select_reward` for best-of-N and weighted majority).

    rewards:
      - {name: numeric, weight: 1.0}
      - {name: reward_model, path: runs/quickstart-prm/prm/final, aggregate: min, weight: 0.5}

The model at `path` is what posttrain's `reward` or `prm` method leaves in final/:

- a sequence classifier with one output (a reward model): the score is its output for prompt +
  completion, unbounded (Bradley-Terry logits);
- a token classifier with two labels (a process reward model): the completion is cut into
  steps at `step_separator`, each step is rated P(correct) at its separator, as in training,
  and the score is the `aggregate` (an option) of the step ratings: `min` (the weakest step), `last`,
  `product` or `mean`; in [0, 1]. A completion with no step scores 0.

Scoring is batched (`batch_size`) and runs on `device`: `auto` is this process's GPU when there
is one (its LOCAL_RANK's), else the CPU; or `cpu`, `cuda`, `cuda:N`. The model is loaded once per
process, outside any DeepSpeed engine and outside ZeRO-3's partitioned construction
(`outside_zero3`), so a ZeRO-3 policy stays sharded and the reward model is a plain replica
beside it. Here too the tokenisation is the PRM trainer's (`encode`): one place.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache

from posttrain.errors import UserError
from posttrain.rewards.numeric import completion_text

AGGREGATES = ("min", "last", "product", "mean")


def encode(tokenizer, prompt, steps: list[str], *, separator: str = "\n", max_length: int | None = 1024,
           max_prompt_length: int | None = 512, max_completion_length: int | None = None,
           tag: str | None = None) -> tuple[list[int], list[int]]:
    """Token ids of prompt + steps (each followed by the separator), and the position of each
    step's label: the last token of its separator, or with `tag` (a prefix of the separator,
    Math-Shepherd's " ки" of " ки\n"), the tag's last token, the rest of the separator after it.
    Positions that truncation cut are dropped, so a long solution keeps the labels of its first
    steps. A chat prompt is rendered with the chat template (the assistant turn opened); a text
    prompt starts with the BOS token."""
    if isinstance(prompt, list):
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        prompt_ids = tokenizer(prompt or "", add_special_tokens=False)["input_ids"]
        if tokenizer.bos_token_id is not None:
            prompt_ids = [tokenizer.bos_token_id, *prompt_ids]
    if max_prompt_length is not None:
        prompt_ids = prompt_ids[-max_prompt_length:]
    if tag is not None and not (tag and separator.startswith(tag)):
        raise ValueError(f"step_tag {tag!r} must begin step_separator {separator!r}")
    head, tail = (tag, separator[len(tag):]) if tag is not None else (separator, "")
    separator_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    tail_ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    if not separator_ids:
        raise ValueError(f"step_separator {separator!r} has no tokens")
    limit = len(prompt_ids) + (max_completion_length if max_completion_length is not None else 1 << 62)
    if max_length is not None:
        limit = min(limit, max_length)
    ids, positions = list(prompt_ids), []
    for step in steps:
        if len(ids) >= limit:
            break  # the rest would be cut: not tokenised at all (a 1 MB completion stays cheap)
        step_ids = tokenizer(_cut(tokenizer, step, limit - len(ids)), add_special_tokens=False)["input_ids"] + separator_ids
        ids += step_ids
        positions.append(len(ids) - 1)
        ids += tail_ids
    return ids[:limit], [p for p in positions if p < limit]


def longest_token(tokenizer) -> int:
    """The most characters one token of `tokenizer` stands for (64 if it has no vocabulary)."""
    cached = getattr(tokenizer, "_posttrain_longest_token", None)
    if cached is None:
        vocabulary = getattr(tokenizer, "get_vocab", None)
        cached = max((len(t) for t in vocabulary()), default=64) if vocabulary else 64
        try:
            tokenizer._posttrain_longest_token = cached
        except AttributeError:
            pass
    return cached


def _cut(tokenizer, text: str, tokens: int) -> str:
    """`text` cut where it certainly holds more than `tokens` tokens: the tokens before the cut
    are the same as the whole text's (only those near the cut can change)."""
    keep = (tokens + 8) * max(1, longest_token(tokenizer))
    return text if len(text) <= keep else text[:keep]


# ----------------------------------------------------------------------------- untrusted text in a model's input

ZERO_WIDTH = "\u200b"
CUT_MARK = "\n[... part of this text was cut here to fit ...]\n"


def _control_pattern(tokenizer):
    """A pattern matching every string `tokenizer` reads as one of its added or special tokens
    (cached on the tokenizer), or None when it has none."""
    cached = getattr(tokenizer, "_posttrain_control_pattern", False)
    if cached is not False:
        return cached
    strings = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        strings.add(getattr(token, "content", str(token)))
    strings = sorted((s for s in strings if isinstance(s, str) and len(s) > 1), key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(s) for s in strings)) if strings else None
    try:
        tokenizer._posttrain_control_pattern = pattern
    except AttributeError:
        pass
    return pattern


def as_data(tokenizer, text: str) -> str:
    """`text` (a model's completion, anything untrusted) as ordinary text to `tokenizer`: each
    occurrence of one of its special or added tokens' strings (`<|im_end|>`, `<|im_start|>`,
    `</s>`, ...) is broken by a zero-width space after its first character, so it is tokenized
    as the characters it shows, never as a control token that could close a turn or open one."""
    pattern = _control_pattern(tokenizer)
    if pattern is None:
        return text
    for _ in range(8):  # a break can leave an overlapping occurrence: until none is left
        if pattern.search(text) is None:
            break
        text = pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH + m.group(0)[1:], text)
    return text


def count_tokens(tokenizer, text: str, special: bool = False) -> int:
    return len(tokenizer(text, add_special_tokens=special)["input_ids"])


def cut_middle(tokenizer, text: str, tokens: int) -> str:
    """`text` in at most about `tokens` tokens: its start and its end, with CUT_MARK between
    where the middle was cut (a judge still sees the question an answer starts from and the
    final answer it ends with)."""
    span = (tokens + 8) * max(1, longest_token(tokenizer))
    if len(text) > 2 * span:  # certainly over: only the ends can be kept anyway
        text = text[:span] + text[-span:]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= tokens:
        return text
    keep = max(0, tokens - count_tokens(tokenizer, CUT_MARK))
    head, tail = keep // 2, keep - keep // 2
    return (tokenizer.decode(ids[:head]) + CUT_MARK + (tokenizer.decode(ids[-tail:]) if tail else "")).strip("\n") \
        if head or tail else CUT_MARK.strip()


def fit(tokenizer, render, values: dict, cuttable: list[str], limit: int, special: bool = False) -> str:
    """`render(values)` in at most `limit` tokens: the `cuttable` fields (the answers, in order
    of preference) lose their middles, each in proportion to its length, the rest (the question,
    the instructions, the template) is kept; the question's middle goes only where the answers
    alone cannot make room."""
    values = dict(values)
    certainly_over = (limit + 8) * max(1, longest_token(tokenizer))  # characters: more tokens than limit
    for key in cuttable:  # a field that alone cannot fit (a 1 MB answer) is cut before anything is tokenized
        if len(values[key]) > certainly_over:
            values[key] = cut_middle(tokenizer, values[key], limit)
    text = render(values)
    for fields in (cuttable, [*cuttable, "question"] if "question" in values else cuttable):
        for _ in range(4):
            over = count_tokens(tokenizer, text, special) - limit
            if over <= 0:
                return text
            lengths = {key: count_tokens(tokenizer, values[key]) for key in fields}
            total = sum(lengths.values())
            if total == 0:
                break
            for key in fields:
                share = -(-over * lengths[key] // total) + 4
                values[key] = cut_middle(tokenizer, values[key], max(0, lengths[key] - share))
            text = render(values)
    return text  # still over: the tokenizer's truncation is the last resort


def candidate_ids(tokenizer, negative: str, positive: str) -> list[int]:
    """[negative, positive]: the token ids a causal-LM PRM writes for an incorrect and a correct
    step; each must be one token of the tokenizer (a ValueError says which is not)."""
    ids = []
    for name, text in (("negative_token", negative), ("positive_token", positive)):
        found = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(found) != 1:
            raise ValueError(f"{name} {text!r} is {len(found)} tokens of this tokenizer; it must be exactly one")
        ids += found
    if ids[0] == ids[1]:
        raise ValueError(f"negative_token {negative!r} and positive_token {positive!r} are the same token")
    return ids


def step_scores(model, tokenizer, records: list[dict], options: dict, batch_size: int = 16,
                candidates: list[int] | None = None) -> list[list[float]]:
    """Each step's probability of being correct, read at the step's separator: by a token
    classifier with two labels (1 = correct), or, given `candidates` ([negative, positive] token
    ids), by a causal LM: the softmax of its two logits there, P(positive) (Math-Shepherd's
    reading). Steps that truncation cut are left out. Records are `{prompt, completions:
    [steps]}`; `options` are encode's keyword arguments."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[list[float]] = []
    for start in range(0, len(records), batch_size):
        encoded = [encode(tokenizer, r["prompt"], r["completions"], **options) for r in records[start: start + batch_size]]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in encoded], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in encoded], device=device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits
            if candidates is not None:
                logits = logits[..., candidates]
            probabilities = logits.float().softmax(-1)[..., 1]
        scores += [probabilities[i, positions].tolist() for i, (_, positions) in enumerate(encoded)]
    return scores


def sequence_text(tokenizer, prompt, answer) -> str:
    """Prompt + answer as a reward model reads them: through the chat template for chat data."""
    if isinstance(answer, list):
        return tokenizer.apply_chat_template((prompt if isinstance(prompt, list) else []) + answer, tokenize=False)
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": answer}], tokenize=False)
    return (prompt or "") + answer


def sequence_scores(model, tokenizer, texts: list[str], max_length: int | None, batch_size: int = 16) -> list[float]:
    """A sequence classifier's one output for each text."""
    import torch

    device = next(model.parameters()).device
    scores: list[float] = []
    if max_length is not None:  # a long text is cut before tokenising: truncation keeps its start anyway
        texts = [_cut(tokenizer, t, max_length) for t in texts]
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start: start + batch_size], return_tensors="pt", padding=True,
                            truncation=max_length is not None, max_length=max_length,
                            add_special_tokens=False).to(device)
        with torch.no_grad():
            scores += model(**encoded).logits[:, 0].float().tolist()
    return scores


def aggregate_scores(steps: list[float], how: str) -> float:
    """One score from a PRM's step ratings.

    >>> [aggregate_scores([0.9, 0.5, 0.8], how) for how in AGGREGATES]
    [0.5, 0.8, 0.36000000000000004, 0.7333333333333334]
    >>> aggregate_scores([], "min")
    0.0
    """
    if not steps:
        return 0.0
    if how == "min":
        return min(steps)
    if how == "last":
        return steps[-1]
    if how == "product":
        result = 1.0
        for s in steps:
            result *= s
        return result
    return sum(steps) / len(steps)


def resolve_device(device: str) -> str:
    """`auto`: this process's GPU (its LOCAL_RANK's) when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"


@contextmanager
def outside_zero3():
    """Load a model as a plain replica while a ZeRO-3 run is set up: transformers otherwise
    builds every model under deepspeed.zero.Init (its global HfDeepSpeedConfig says stage 3),
    and a partitioned reward model outside the engine has empty weights."""
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:
        yield
        return
    saved = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = saved


PRM_HEAD_FILE = "prm.json"  # a causal-LM PRM's tokens, written into final/ by trainers/prm.py


def prm_head(path: str) -> dict:
    """What posttrain's PRM training recorded in final/prm.json (a causal-LM PRM's tokens, step
    separator and tag); {} when there is none."""
    import json
    from pathlib import Path

    marker = Path(path) / PRM_HEAD_FILE
    if not marker.is_file():
        return {}
    try:
        head = json.loads(marker.read_text())
        if not isinstance(head, dict) or not all(isinstance(head.get(k), str) for k in ("positive_token", "negative_token")):
            raise ValueError("positive_token and negative_token must be strings")
        return head
    except ValueError as exc:
        raise UserError(f"reward_model: {marker} is not a PRM head record ({exc})") from None


def lm_prm_tokens(path: str, positive: str | None, negative: str | None) -> tuple[str, str] | None:
    """(positive, negative) when the model at `path` is a causal-LM process reward model: given
    as the reward's options, or recorded in its prm.json by posttrain's PRM training."""
    if positive is not None or negative is not None:
        return positive or "+", negative or "-"
    head = prm_head(path)
    return (head["positive_token"], head["negative_token"]) if head else None


@lru_cache(maxsize=4)
def load_verifier_model(path: str, device: str, positive: str | None = None, negative: str | None = None):
    """(model, tokenizer, kind, candidates) for the reward or process reward model at `path`,
    loaded once; `candidates` are a causal-LM PRM's [negative, positive] token ids (else None)."""
    from posttrain import models

    try:
        config = models.load_config(path)
    except UserError as exc:
        raise UserError(f"reward_model: cannot load a model from {path!r}: {exc}") from None
    tokenizer = models.load_tokenizer(path, what="reward_model")
    architectures = " ".join(config.architectures or [])
    tokens, candidates = lm_prm_tokens(path, positive, negative), None
    if "TokenClassification" in architectures:
        kind, auto = "process", "AutoModelForTokenClassification"
    elif "SequenceClassification" in architectures and config.num_labels == 1:
        kind, auto = "outcome", "AutoModelForSequenceClassification"
    elif "CausalLM" in architectures and tokens is not None:
        kind, auto = "process", "AutoModelForCausalLM"
        try:
            candidates = candidate_ids(tokenizer, negative=tokens[1], positive=tokens[0])
        except ValueError as exc:
            raise UserError(f"reward_model: {path}: {exc}") from None
    else:
        raise UserError(f"reward_model: {path} is a {architectures or config.model_type}; a reward model is a sequence "
                        "classifier with one output (method: reward), a token classifier with two labels (method: "
                        "prm), or a causal LM that writes a step's verdict token (method: prm with head: causal_lm, "
                        "or positive_token / negative_token given as options)")
    with outside_zero3():
        model = models.load_pretrained(auto, path, what="reward_model").to(resolve_device(device)).eval()
    return model, tokenizer, kind, candidates


def reward_model_reward(completions, *, path: str, aggregate: str = "min", step_separator: str | None = None,
                        max_length: int = 1024, batch_size: int = 16, device: str = "auto",
                        positive_token: str | None = None, negative_token: str | None = None,
                        step_tag: str | None = None, prompts=None, **_columns) -> list[float]:
    """Each completion's score by the reward model or process reward model at `path`; a causal-LM
    PRM (its prm.json, or `positive_token` / `negative_token` given) scores each step
    P(positive) among its two tokens. The step separator and tag default to what the PRM was
    trained with (its prm.json), else "\n" and none."""
    if aggregate not in AGGREGATES:
        raise UserError(f"reward_model: aggregate is {aggregate!r}; one of {', '.join(AGGREGATES)}")
    model, tokenizer, kind, candidates = load_verifier_model(path, device, positive_token, negative_token)
    prompts = prompts if prompts is not None else [""] * len(completions)
    if kind == "outcome":
        texts = []
        for p, c in zip(prompts, completions):
            # the completion is data (as_data); a long one loses its middle, never the prompt or its end
            answer = {"answer": as_data(tokenizer, completion_text(c))}
            render = (lambda v, p=p: sequence_text(tokenizer, p, v["answer"]))
            texts.append(fit(tokenizer, render, answer, ["answer"], max_length) if max_length else render(answer))
        return sequence_scores(model, tokenizer, texts, max_length, batch_size)
    head = prm_head(path)
    step_separator = step_separator if step_separator is not None else head.get("step_separator", "\n")
    step_tag = step_tag if step_tag is not None else head.get("step_tag")
    # a completion's steps: split where the separator's text after the tag is (a tagged PRM's
    # " ки\n" -> lines: the policy does not write the tags), else at the separator
    tail = step_separator[len(step_tag):] if step_tag and step_separator.startswith(step_tag) else ""
    split_on = tail or step_separator
    records = [{"prompt": p, "completions": [s for s in as_data(tokenizer, completion_text(c)).split(split_on)
                                             if s.strip()]} for p, c in zip(prompts, completions)]
    options = {"separator": step_separator, "max_length": max_length, "tag": step_tag}
    rated = step_scores(model, tokenizer, records, options, batch_size, candidates)
    return [aggregate_scores(steps, aggregate) for steps in rated]


def check_options(*, aggregate: str = "min", **_) -> None:
    """Checked when the recipe loads (recipe/check.py): raises ValueError naming the option."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate is {aggregate!r}; one of {', '.join(AGGREGATES)}")


reward_model_reward.check_options = check_options


class PRMStepJudge:
    """A process reward model as the step judge of reasoning trees (data build-trees, the
    experiment's trees, a prm source's build_trees): a step is correct when the PRM rates it
    P(correct) >= threshold, given the question and the steps before it; a step past max_length
    is left unrated (final-answer correctness then decides it)."""

    def __init__(self, *, path: str, threshold: float = 0.5, step_separator: str = "\n", max_length: int = 1024,
                 batch_size: int = 16, device: str = "auto"):
        if not 0 < threshold < 1:
            raise ValueError(f"threshold is {threshold}; it must be between 0 and 1")
        self.path, self.threshold, self.device, self.batch_size = path, threshold, device, batch_size
        self.options = {"separator": step_separator, "max_length": max_length}

    def rate_many(self, items: list[tuple[dict, list[str], str]]) -> list[tuple[str, str] | None]:
        if not items:
            return []
        model, tokenizer, kind, candidates = load_verifier_model(self.path, self.device)
        if kind != "process":
            raise UserError(f"judge reward_model: {self.path} rates whole answers; a step judge needs a process "
                            "reward model (method: prm)")
        records = [{"prompt": record["prompt"], "completions": [as_data(tokenizer, s) for s in (*previous, step)]}
                   for record, previous, step in items]  # sampled steps are data, as in reward_model_reward
        rated = step_scores(model, tokenizer, records, self.options, self.batch_size, candidates)
        verdicts = []
        for record, scores in zip(records, rated):
            if len(scores) < len(record["completions"]):
                verdicts.append(None)
                continue
            p = scores[-1]
            verdicts.append(("correct", None) if p >= self.threshold else
                            ("incorrect", f"the process reward model rates this step {p:.2f} (below {self.threshold})."))
        return verdicts

    def __call__(self, record, previous_steps, step):
        return self.rate_many([(record, previous_steps, step)])[0]
