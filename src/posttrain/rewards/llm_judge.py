"""LLM-as-a-judge: any causal LM, a prompt template and a parser, as a reward, a step judge of
reasoning trees, an evaluation selector, or a pairwise judge of preference pairs.

    rewards:
      - {name: llm_judge, path: Qwen/Qwen2.5-7B-Instruct, weight: 0.5}
    trees: {judge: {name: llm_judge, path: ..., template: "...{step}..."}}

The judge reads a filled template (through the model's chat template when it has one), answers
greedily, and its reply is parsed with a regular expression (`pattern`, case-insensitive; the
first match counts). A reply that does not parse, or a score outside [0, max_score], is never
scored as a pass: the reward is 0, the step is left unrated (the tree's other ratings decide),
the pair verdict is counted as unparsed; every such judgement is counted (`JUDGE_COUNTS`) and
reported.

Pairwise judging asks both orders, (chosen, rejected) and (rejected, chosen), so a judge that
prefers a position shows it: `judge_pairs` reports the accuracy in each order, the share of
pairs judged right in both, the share of verdicts that chose the answer shown first, and the
pairs whose verdict followed the position instead of the answer.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache

from posttrain.errors import UserError
from posttrain.rewards.model_reward import _cut, as_data, fit, outside_zero3, resolve_device
from posttrain.rewards.numeric import completion_text

SCORE_TEMPLATE = ("Rate how well the answer solves the question, from 0 (wrong) to 10 (fully correct).\n\n"
                  "Question: {question}\n\nAnswer: {answer}\n\nReply with one line: Score: N")
SCORE_PATTERN = r"score:\s*(-?\d+(?:\.\d+)?)"
STEP_TEMPLATE = ("Question: {question}\n\nSolution so far:\n{previous}\n\nNext step: {step}\n\n"
                 "Is the next step correct? Reply with one line: Verdict: correct, or Verdict: incorrect")
STEP_PATTERN = r"verdict:\s*(correct|incorrect)"
PAIR_TEMPLATE = ("Question: {question}\n\nAnswer A: {a}\n\nAnswer B: {b}\n\n"
                 "Which answer is better? Reply with one line: Better: A, or Better: B")
PAIR_PATTERN = r"better:\s*([ab])\b"

# (use, outcome) -> count, for every judgement this process made: use is score | step | pair,
# outcome is judged | unparsed.
JUDGE_COUNTS: Counter = Counter()


def question_of(prompt) -> str:
    """The last user turn of a chat prompt, or the text prompt itself."""
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else ""
    return prompt or ""


def parse_score(reply: str, pattern: str = SCORE_PATTERN, max_score: float = 10.0) -> float | None:
    """The score in [0, 1] a reply gives, or None when it gives none in [0, max_score].

    >>> parse_score("Score: 7"), parse_score("score:10 because"), parse_score("I think 7"), parse_score("Score: 11")
    (0.7, 1.0, None, None)
    """
    match = re.search(pattern, reply, flags=re.IGNORECASE)
    if not match:
        return None
    try:
        value = float(match.group(1))
    except (IndexError, ValueError):
        return None
    return value / max_score if 0 <= value <= max_score else None


def parse_choice(reply: str, pattern: str, choices: tuple[str, ...]) -> str | None:
    """The choice a reply makes (lower-cased), or None.

    >>> parse_choice("Verdict: Incorrect.", STEP_PATTERN, ("correct", "incorrect"))
    'incorrect'
    >>> parse_choice("Better: B", PAIR_PATTERN, ("a", "b")), parse_choice("Both are fine", PAIR_PATTERN, ("a", "b"))
    ('b', None)
    """
    match = re.search(pattern, reply, flags=re.IGNORECASE)
    if not match:
        return None
    value = match.group(1).lower()
    return value if value in choices else None


@lru_cache(maxsize=2)
def load_judge_model(path: str, device: str):
    """(model, tokenizer) of the causal LM at `path` (a directory, a hub name, a .gguf file or a
    built-in name: posttrain/models.py), loaded once per process."""
    from posttrain import models

    local = models.local_model(path)
    tokenizer = models.load_tokenizer(local, what="llm_judge")
    with outside_zero3():
        model = models.load_pretrained("AutoModelForCausalLM", local, what="llm_judge")
    model = model.to(resolve_device(device)).eval()
    return model, tokenizer


def prompt_limit(path: str, device: str, max_length: int, max_new_tokens: int) -> int:
    """The tokens a judge prompt may take: max_length, and room for the reply in the model."""
    model, _ = load_judge_model(path, device)
    positions = getattr(model.config, "max_position_embeddings", None) or max_length + max_new_tokens
    return max(16, min(max_length, positions - max_new_tokens))


def clip(path: str, device: str, text: str, tokens: int) -> str:
    """`text` cut before tokenising where it certainly holds more than `tokens` tokens (a 1 MB
    answer stays cheap); the judge prompt is cut to its limit again when it is tokenised."""
    return _cut(load_judge_model(path, device)[1], text, tokens)


def judge_prompts(path: str, device: str, template: str, fields: list[dict], cuttable: list[str], *,
                  max_length: int = 1024, max_new_tokens: int = 32) -> list[str]:
    """Each filled template as the judge reads it (through its chat template). Untrusted fields
    (`cuttable`: the answers, the steps) are data: strings of the judge tokenizer's special
    tokens in them are broken (model_reward.as_data), so a completion cannot close the user
    turn and write the judge's reply. A prompt over the limit loses the middle of its answers,
    never the question, the instructions or an answer's end (model_reward.fit)."""
    _, tokenizer = load_judge_model(path, device)
    limit = prompt_limit(path, device, max_length, max_new_tokens)

    def render(values: dict) -> str:
        text = template.format(**values)
        if tokenizer.chat_template:
            return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True)
        return text

    prompts = []
    for values in fields:
        values = {key: as_data(tokenizer, value) if key in cuttable else value for key, value in values.items()}
        prompts.append(fit(tokenizer, render, values, cuttable, limit, special=not tokenizer.chat_template))
    return prompts


def judge_replies(path: str, texts: list[str], *, max_new_tokens: int = 32, batch_size: int = 16,
                  device: str = "auto", max_length: int = 1024) -> list[str]:
    """The judge's greedy reply to each prompt (judge_prompts made it, fitted to the limit; one
    still over it keeps its end, where the template asks for the reply's format)."""
    import torch

    model, tokenizer = load_judge_model(path, device)
    limit = prompt_limit(path, device, max_length, max_new_tokens)
    replies: list[str] = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    cut, tokenizer.truncation_side = tokenizer.truncation_side, "left"
    try:
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer([_cut(tokenizer, t[::-1], limit)[::-1] for t in texts[start: start + batch_size]],
                               return_tensors="pt", padding=True, truncation=True, max_length=limit,
                               add_special_tokens=not tokenizer.chat_template).to(model.device)
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                        pad_token_id=tokenizer.pad_token_id)
            replies += tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = side, cut
    return replies


def _count(use: str, parsed: list) -> None:
    unparsed = sum(p is None for p in parsed)
    JUDGE_COUNTS[(use, "judged")] += len(parsed)
    JUDGE_COUNTS[(use, "unparsed")] += unparsed
    if unparsed:
        total = JUDGE_COUNTS[(use, "unparsed")]
        if total == unparsed or (total & (total - 1)) == 0:  # the first time, then at powers of two
            print(f"posttrain: llm_judge: {total} of {JUDGE_COUNTS[(use, 'judged')]} {use} judgements so far did "
                  "not parse (scored 0 / left unrated, never a pass)")


def llm_judge_reward(completions, *, path: str, template: str = SCORE_TEMPLATE, pattern: str = SCORE_PATTERN,
                     max_score: float = 10.0, max_new_tokens: int = 32, max_length: int = 1024, batch_size: int = 16,
                     device: str = "auto", prompts=None, ground_truth=None, **_columns) -> list[float]:
    """Each completion's score in [0, 1] by the judge at `path`; 0 when the reply does not parse.
    The template may use {question}, {answer} and {ground_truth}; the prompt is at most
    `max_length` tokens (and what the model's positions leave after the reply)."""
    prompts = prompts if prompts is not None else [""] * len(completions)
    truths = ground_truth if isinstance(ground_truth, list) else [ground_truth] * len(completions)
    limit = prompt_limit(path, device, max_length, max_new_tokens)
    fields = [{"question": clip(path, device, question_of(p), limit), "answer": completion_text(c),
               "ground_truth": "" if g is None else clip(path, device, str(g), limit)}
              for p, c, g in zip(prompts, completions, truths)]
    texts = judge_prompts(path, device, template, fields, ["answer"], max_length=max_length,
                          max_new_tokens=max_new_tokens)
    replies = judge_replies(path, texts, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device,
                            max_length=max_length)
    scores = [parse_score(r, pattern, max_score) for r in replies]
    _count("score", scores)
    return [0.0 if s is None else s for s in scores]


def check_options(*, template: str = SCORE_TEMPLATE, pattern: str = SCORE_PATTERN, max_score: float = 10.0, **_) -> None:
    try:
        template.format(question="", answer="", ground_truth="")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"template: {exc!r}; it may use {{question}}, {{answer}} and {{ground_truth}}") from None
    try:
        if re.compile(pattern).groups < 1:
            raise ValueError(f"pattern {pattern!r} has no group to read the score from")
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r}: {exc}") from None
    if max_score <= 0:
        raise ValueError(f"max_score is {max_score}; it must be > 0")


llm_judge_reward.check_options = check_options


class LLMStepJudge:
    """A step judge of reasoning trees (data build-trees, the experiment's trees): the LM rates
    each new step given the question and the steps before it. A reply that does not parse
    leaves the step unrated (final-answer correctness then decides it), and is counted."""

    def __init__(self, *, path: str, template: str = STEP_TEMPLATE, pattern: str = STEP_PATTERN,
                 max_new_tokens: int = 16, batch_size: int = 16, device: str = "auto"):
        for field in ("question", "previous", "step"):
            if "{" + field + "}" not in template:
                raise ValueError(f"template has no {{{field}}}")
        self.path, self.template, self.pattern = path, template, pattern
        self.options = {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "device": device}

    def rate_many(self, items: list[tuple[dict, list[str], str]]) -> list[tuple[str, str] | None]:
        fields = [{"question": question_of(record["prompt"]), "previous": "\n".join(previous) or "(none)", "step": step}
                  for record, previous, step in items]
        texts = judge_prompts(self.path, self.options["device"], self.template, fields, ["previous", "step"],
                              max_new_tokens=self.options["max_new_tokens"]) if fields else []
        replies = judge_replies(self.path, texts, **self.options) if texts else []
        verdicts = [parse_choice(r, self.pattern, ("correct", "incorrect")) for r in replies]
        _count("step", verdicts)
        return [None if v is None else (v, f"the judge model rates this step {v}.") for v in verdicts]

    def __call__(self, record, previous_steps, step):
        return self.rate_many([(record, previous_steps, step)])[0]


def judge_pairs(path: str, pairs: list[dict], *, template: str = PAIR_TEMPLATE, pattern: str = PAIR_PATTERN,
                max_new_tokens: int = 16, batch_size: int = 16, device: str = "auto") -> dict:
    """Judge preference pairs ({prompt, chosen, rejected}) in both orders; position bias measured."""
    def fields(prompt, a, b):
        return {"question": question_of(prompt), "a": completion_text(a), "b": completion_text(b)}

    forward = [fields(p["prompt"], p["chosen"], p["rejected"]) for p in pairs]  # right answer: a
    backward = [fields(p["prompt"], p["rejected"], p["chosen"]) for p in pairs]  # right answer: b
    texts = judge_prompts(path, device, template, forward + backward, ["a", "b"], max_new_tokens=max_new_tokens)
    replies = judge_replies(path, texts, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
    choices = [parse_choice(r, pattern, ("a", "b")) for r in replies]
    _count("pair", choices)
    report = pair_report(choices[: len(pairs)], choices[len(pairs):])
    # every reply, as the judge wrote it, with what it was read as (None: it did not parse)
    report["replies"] = [{"pair": i % len(pairs), "chosen_shown": "A" if i < len(pairs) else "B", "reply": reply,
                          "read_as": choice and choice.upper()} for i, (reply, choice) in enumerate(zip(replies, choices))]
    return report


def pair_report(first: list[str | None], second: list[str | None]) -> dict:
    """What pairwise verdicts say: `first[i]` is the choice with the chosen answer shown as A,
    `second[i]` with it shown as B (None: the reply did not parse).

    >>> r = pair_report(["a", "a", "b", None], ["b", "a", "b", "b"])
    >>> r["accuracy_both_orders"], r["position_decided"], r["unparsed"], r["first_position_rate"]
    (0.25, 2, 1, 0.42857142857142855)
    """
    n = len(first)
    choices = [*first, *second]
    parsed = [c for c in choices if c is not None]
    both = [(f, s) for f, s in zip(first, second) if f is not None and s is not None]
    return {
        "pairs": n, "judgements": 2 * n, "unparsed": len(choices) - len(parsed),
        "accuracy_chosen_first": sum(c == "a" for c in first) / n if n else 0.0,
        "accuracy_chosen_second": sum(c == "b" for c in second) / n if n else 0.0,
        "accuracy_both_orders": sum(f == "a" and s == "b" for f, s in zip(first, second)) / n if n else 0.0,
        "first_position_rate": sum(c == "a" for c in parsed) / len(parsed) if parsed else None,
        # the same letter in both orders: the position decided, not the answer
        "position_decided": sum(f == s for f, s in both),
        "parsed_both_orders": len(both),
        **against_a_coin(first, second),
    }


def wilson(successes: int, n: int, z: float = 1.96) -> list[float] | None:
    """The 95 % Wilson score interval of a proportion (None for n = 0).

    >>> [round(x, 3) for x in wilson(30, 48)]
    [0.484, 0.748]
    """
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def against_a_coin(first: list[str | None], second: list[str | None]) -> dict:
    """The judge against a coin flip, which is right in half its verdicts (a quarter of pairs in
    both orders), picks the first position half the time and always parses: the share of right
    verdicts and of first-position verdicts with their 95 % intervals, and whether each interval
    excludes the coin's value.

    >>> r = against_a_coin(["a"] * 20, ["a"] * 20)  # always "A": right half the time, all position
    >>> r["right_verdicts"], r["better_than_a_coin"], r["position_bias"]
    (0.5, False, True)
    """
    verdicts = [*first, *second]
    right = sum(c == "a" for c in first) + sum(c == "b" for c in second)
    parsed = [c for c in verdicts if c is not None]
    a_count = sum(c == "a" for c in parsed)
    right_ci, first_ci = wilson(right, len(verdicts)), wilson(a_count, len(parsed))
    return {
        "right_verdicts": right / len(verdicts) if verdicts else 0.0,  # unparsed replies count as wrong
        "right_verdicts_interval": right_ci,
        "first_position_interval": first_ci,
        "parsed_share": len(parsed) / len(verdicts) if verdicts else 0.0,
        "coin_flip": {"right_verdicts": 0.5, "accuracy_both_orders": 0.25, "first_position_rate": 0.5,
                      "parsed_share": 1.0},
        "better_than_a_coin": bool(right_ci and right_ci[0] > 0.5),
        "worse_than_a_coin": bool(right_ci and right_ci[1] < 0.5),
        "position_bias": bool(first_ci and (first_ci[0] > 0.5 or first_ci[1] < 0.5)),
    }
