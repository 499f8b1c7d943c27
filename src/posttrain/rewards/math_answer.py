"""`math`: the final answer, checked for mathematical equivalence with math-verify.

What is compared:

- the completion's answer is found by math-verify's own extraction (its LaTeX and expression
  configs, as TRL's and open-r1's accuracy rewards use it), with posttrain's markers as
  priorities on top: whichever of `\\boxed{}`, `<answer>`, "the final answer is", `####`,
  `Answer:` comes last decides where to look; with no marker math-verify reads the whole text
  (a bare `-5`, `$\\frac13$`, `1,000.99€`). When the last marker is a `\\boxed{}`, every boxed
  answer is considered together (a set or multi-part answer) as well as the last one alone.
- the gold answer is parsed once and cached. A gold answer that does not parse scores None
  (TRL leaves it out of the reward), is counted and logged — never 1.0.

Fast path: when both answers are plain numbers (integers, decimals, thousands separators,
`a/b`, `\\frac{a}{b}`), they are compared exactly here, without sympy. Everything else runs in
a pool of worker processes (bounded.py), one per core by default, each item bounded in time
(default 2 s) on any thread; an item that overruns, or that makes math-verify raise, scores 0
and is counted.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from fractions import Fraction
from functools import lru_cache

from posttrain.rewards.answers import MAX_ANSWER_CHARS, hedged, last_marker
from posttrain.rewards.bounded import BoundedPool
from posttrain.rewards.numeric import completion_text

logger = logging.getLogger(__name__)

# How often each kind of event happened in this process: "timeout", "error", "gold_unparsed".
COUNTS: Counter = Counter()

MAX_TEXT_CHARS = 1 << 20  # beyond 1 MB only the last megabyte is read (the answer is at the end)

_INTEGER = r"(?:\d{1,3}(?:,\d{3})+|\d+)"
_PLAIN = re.compile(rf"([-+]?)((?:{_INTEGER}(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d{{1,3}})?)")
_SLASH = re.compile(r"([-+]?)(\d+)\s*/\s*(\d+)")
_ARG = r"(?:\{\s*(\d+)\s*\}|(\d))"  # \frac{12}{5}, or \frac12 (one digit each, as LaTeX reads it)
_FRAC = re.compile(rf"([-+]?)\\[dt]?frac\s*{_ARG}\s*{_ARG}")


def _unwrap(text: str) -> str:
    text = text.strip().rstrip(".").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("\\boxed{", "}")):
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            text = text[len(left) : len(text) - len(right)].strip()
    return text.rstrip(".").strip()


@lru_cache(maxsize=65536)
def plain_number(text: str) -> Fraction | None:
    """`text` as an exact number when it is nothing but one, else None.

    >>> plain_number("1,000.50"), plain_number(r"$-\\frac{3}{4}$"), plain_number("2/4")
    (Fraction(2001, 2), Fraction(-3, 4), Fraction(1, 2))
    >>> plain_number("x + 1") is None, plain_number("50%") is None
    (True, True)
    """
    if len(text) > 200:
        return None
    body = _unwrap(text)
    match = _PLAIN.fullmatch(body)
    if match:
        return Fraction(match.group(1) + match.group(2).replace(",", ""))
    match = _SLASH.fullmatch(body)
    if match:
        sign, numerator, denominator = match.groups()
    else:
        match = _FRAC.fullmatch(body)
        if not match:
            return None
        sign, numerator, denominator = match.group(1), match.group(2) or match.group(3), match.group(4) or match.group(5)
    if int(denominator) == 0:
        return None
    return Fraction(int(numerator), int(denominator)) * (-1 if sign == "-" else 1)


_SPACES = re.compile(r"\s+|\\[,;:! ]|\\left|\\right")


@lru_cache(maxsize=65536)
def normal_form(text: str) -> str:
    """A spelling-level normal form: two answers with the same one are the same answer.

    >>> normal_form(r"$\\dfrac{\\sqrt{2}}{2}$."), normal_form(r"\\left( 0, 1 \\right]")
    ('\\\\frac{\\\\sqrt{2}}{2}', '(0,1]')
    """
    text = _SPACES.sub("", _unwrap(text))
    return text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


def _as_latex(answer: str) -> str:
    return answer if ("$" in answer or "\\boxed" in answer) else f"\\boxed{{{answer}}}"


def _quiet():
    # math-verify warns that its own timeouts are off: they are; the worker process is the bound.
    logging.getLogger("math_verify").setLevel(logging.ERROR)


@lru_cache(maxsize=4096)
def parse_gold(gold: str):
    """math-verify's parse of a gold answer (a bare answer, LaTeX, or a solution with \\boxed{}),
    or None when nothing in it parses. Runs in the worker; cached there."""
    from math_verify import parse

    _quiet()
    for text in (_as_latex(gold), gold):
        # Parsed means parsed into mathematics, not merely matched as a string.
        if parse(text, parsing_timeout=None, fallback_mode="no_fallback"):
            return parse(text, parsing_timeout=None)
    return None


def _clean(text: str) -> str:
    """An escaped `\\$` is a currency sign, and quotes around an answer are not part of it."""
    return text.replace("\\$", "").replace('"', " ")


SHORT_ANSWER_CHARS = 200  # a marked answer, or a whole completion, this short is also read as LaTeX


def readings(text: str):
    """The parses of the completion's answer that are compared with the gold one, lazily, most
    likely first (a match with any counts: they are readings of the same text, not several
    answers). A reading whose answer text is one already parsed is not parsed again."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    _quiet()
    boxed_first = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    seen: set[str] = set()

    def found(parsed: list) -> list:
        if parsed and isinstance(parsed[-1], str):
            seen.add(normal_form(parsed[-1]))
        return parsed

    def as_latex(answer: str) -> list:
        answer = _clean(answer).strip().rstrip(".").strip()
        if not answer or len(answer) > SHORT_ANSWER_CHARS or "\n" in answer or normal_form(answer) in seen:
            return []
        return found(parse(_as_latex(answer), parsing_timeout=None))

    marked = last_marker(text)
    if marked is None:  # math-verify's own extraction over the whole text; a short one is also LaTeX
        yield found(parse(_clean(text), boxed_first, parsing_timeout=None))
        yield as_latex(text)
        return
    if marked.answer is None:  # unbalanced braces, an unclosed <answer>
        return
    if marked.kind == "boxed":
        # every \boxed{} together (a set or multi-part answer), and the last one alone
        yield found(parse(text, boxed_first, parsing_timeout=None))
        yield as_latex(marked.answer)
    elif marked.kind == "tag":
        yield as_latex(marked.answer)
        yield found(parse(_clean(marked.answer), boxed_first, parsing_timeout=None))
    else:
        end = text.find("\n", marked.start)
        yield found(parse(_clean(text[marked.start : end if end >= 0 else len(text)]), parsing_timeout=None))
        yield as_latex(marked.answer)


def judge(gold: str, text: str) -> bool | None:
    """True when the completion's answer equals the gold one; None when the gold one does not
    parse. Runs in a worker process (call it directly only where time does not matter)."""
    from math_verify import verify

    gold_parsed = parse_gold(gold)
    if gold_parsed is None:
        return None
    return any(parsed and verify(gold_parsed, parsed, timeout_seconds=None) for parsed in readings(text))


def equivalent(gold: str, answer: str) -> bool:
    """Whether two answers are the same mathematically (both bare or LaTeX), in this process."""
    return bool(judge(gold, _as_latex(answer)))


@lru_cache(maxsize=None)
def _pool(seconds: float, processes: int | None) -> BoundedPool:
    return BoundedPool(seconds, processes)


def _count(event: str, detail: str) -> None:
    COUNTS[event] += 1
    if COUNTS[event] in (1, 10, 100) or COUNTS[event] % 1000 == 0:
        logger.warning("math reward: %s (%s; %d so far)", event, detail, COUNTS[event])


def math_reward(completions, ground_truth, *, timeout: float = 2.0, processes: int | None = None,
                **columns) -> list[float | None]:
    """1.0 where the completion's final answer equals the ground truth mathematically; None
    where the ground truth does not parse.

    >>> math_reward([r"so \\boxed{\\frac{1}{2}}", "The final answer is 0.4.", "-5"], ["0.5", "1/2", "-5"])
    [1.0, 0.0, 1.0]
    """
    scores: list[float | None] = [None] * len(completions)
    slow = []
    for i, (completion, gold) in enumerate(zip(completions, ground_truth)):
        if gold is None or not str(gold).strip():
            _count("gold_unparsed", f"sample {i} has no ground truth")
            continue
        gold = str(gold)
        text = completion_text(completion)[-MAX_TEXT_CHARS:]
        marked = last_marker(text)
        answer = marked.answer if marked else (text if len(text) <= SHORT_ANSWER_CHARS else None)
        if answer is not None and len(answer) <= MAX_ANSWER_CHARS and hedged(answer, gold):
            scores[i] = 0.0  # two or more different final values (answers.hedged)
            continue
        if answer is not None and len(answer) <= SHORT_ANSWER_CHARS:
            gold_number = plain_number(gold)
            number = plain_number(answer) if gold_number is not None else None
            if number is not None:  # two plain numbers: compared exactly, here
                scores[i] = float(number == gold_number)
                continue
            if normal_form(answer) == normal_form(gold) and (marked is None or marked.kind != "boxed"
                                                             or text.count("\\boxed") == 1):
                scores[i] = 1.0  # spelt the same: the same answer, whatever it is
                continue
        slow.append((i, gold, text))
    if slow:
        pool = _pool(float(timeout), processes)
        results = pool.map(judge, [(gold, text) for _, gold, text in slow])
        slow = [i for i, _, _ in slow]
        for i, (status, value) in zip(slow, results):
            if status == "ok":
                if value is None:
                    _count("gold_unparsed", f"ground truth {str(ground_truth[i])[:80]!r} does not parse")
                scores[i] = None if value is None else float(value)
            else:
                _count(status, f"sample {i}: {value}" if value else f"sample {i} ran past {timeout} s")
                scores[i] = 0.0
    return scores


judge.warm_args = ("x + 1/2", r"so \boxed{0.5 + x}")


def _warm(*, timeout: float = 2.0, processes: int | None = None, **_) -> None:
    _pool(float(timeout), processes).warm(judge, *judge.warm_args)


math_reward.warm = _warm


def unreadable_truth(record: dict) -> str | None:
    """Why `math` cannot read the record's ground truth (None: it can): a non-empty answer."""
    truth = record.get("ground_truth")
    return None if isinstance(truth, (str, int, float)) and str(truth).strip() else "no ground_truth answer"


math_reward.unreadable_truth = unreadable_truth
