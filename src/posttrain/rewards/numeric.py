"""GSM8K-style numeric answers: find the final number in a completion and compare it exactly.

Linear time on any input (the patterns cannot backtrack across a run of characters more than
once), and never raises on a model's text: a "number" of more than 1,000 digits is no answer.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache

from posttrain.rewards.answers import hedged, last_marker

_NUMBER = r"[-+]?\$?\d[\d,]*(?:\.\d+)?"
_MARKED = re.compile(rf"(?:Answer:|####|answer is)\s*({_NUMBER})", re.IGNORECASE)
_ANY = re.compile(_NUMBER)
# GSM8K's strict rule (verl's gsm8k reward, lm-evaluation-harness's strict-match): only a number
# after `#### ` counts, the last one; an answer without it scores 0.
_STRICT = re.compile(r"#### (\-?[0-9.,]+)")
STRICT_TAIL = 300  # verl reads the last 300 characters only
MAX_DIGITS = 1000


def completion_text(completion) -> str:
    """A completion as text: TRL passes strings, or message lists for chat data."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")


def _last_number(text: str, truth: str | None = None) -> str | None:
    """The last marked number's text (else the last number's), commas and `$` removed. Given the
    gold answer `truth`: None where the final answer hedges (answers.hedged) — the rest of the
    marked line, or else the last marked answer (a tag, a box), names two or more values."""
    found = None
    for found in _MARKED.finditer(text):
        pass
    if truth is not None and (found is None or (found.end() != len(text) and text[found.end()] != "\n")) \
            and _hedges(text, found, truth):
        return None  # (a number that ends its marked line names nothing else: the common case, no check)
    if found is None:
        for found in _ANY.finditer(text):
            pass
    if found is None:
        return None
    number = found.group(found.lastindex or 0).replace(",", "").replace("$", "")
    return number if len(number) <= MAX_DIGITS else None


def extract_number(text: str) -> Fraction | None:
    """The number after the last 'Answer:' / '####' / 'answer is', else the last number.

    >>> extract_number("46 + 90 = 136\\nAnswer: 136")
    Fraction(136, 1)
    >>> extract_number("It costs $1,250.50 in total") == Fraction("1250.50")
    True
    >>> extract_number("no digits") is None
    True
    """
    number = _last_number(text)
    return None if number is None else Fraction(number)


def canonical(number: str) -> str:
    """One spelling per value of a decimal numeral, without converting it (exact, any length).

    >>> canonical("+007.50"), canonical("-0.0"), canonical("12")
    ('7.5', '0', '12')
    """
    sign = "-" if number.startswith("-") else ""
    number = number.lstrip("+-")
    whole, _, fraction = number.partition(".")
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    if whole == "0" and not fraction:
        sign = ""
    return f"{sign}{whole}.{fraction}" if fraction else f"{sign}{whole}"


_GOLD = re.compile(r"\s*([-+]?)\$?(\d[\d,]*(?:\.\d+)?)\s*")


def unreadable_truth(record: dict) -> str | None:
    """Why `numeric` cannot read the record's ground truth (None: it can). A ground truth is a
    number and nothing else ('72', '-3.5', '1,000'): a text that merely contains numbers (a JSON
    object, a sentence) is refused rather than searched for its last number.

    >>> unreadable_truth({"ground_truth": "1,250"}) is None
    True
    >>> print(unreadable_truth({"ground_truth": '{"n": 2}'}))
    ground truth '{"n": 2}' is not a number
    """
    truth = record.get("ground_truth")
    if truth is None:
        return "no ground_truth"
    if isinstance(truth, bool) or not _GOLD.fullmatch(str(truth)) or len(str(truth)) > MAX_DIGITS:
        shown = str(truth) if len(str(truth)) <= 60 else str(truth)[:57] + "..."
        return f"ground truth {shown!r} is not a number"
    return None


@lru_cache(maxsize=65536)
def _gold(truth: str) -> str | None:
    """The ground truth's canonical numeral; None for a "number" of more than MAX_DIGITS digits
    (no answer can equal it); a text that is not a number raises (the load-time check,
    `unreadable_truth`, refuses such records before a run starts)."""
    if len(truth) > MAX_DIGITS:
        return None
    match = _GOLD.fullmatch(truth)
    if match is None:
        raise ValueError(f"numeric: {unreadable_truth({'ground_truth': truth})}")
    return canonical(match.group(1) + match.group(2).replace(",", ""))


def strict_number(text: str) -> str | None:
    """GSM8K's strict rule: the last `#### N` in the text's last 300 characters, commas removed
    (None: there is none). As verl's `gsm8k.extract_solution(method="strict")`.

    >>> strict_number("so 5 apples\\n#### 1,005"), strict_number("The answer is 12.")
    ('1005', None)
    """
    found = None
    for found in _STRICT.finditer(text[-STRICT_TAIL:]):
        pass
    if found is None:
        return None
    number = found.group(1).replace(",", "").rstrip(".")
    return number if re.fullmatch(r"-?\d+(?:\.\d+)?", number) and len(number) <= MAX_DIGITS else None


def numeric_reward(completions, ground_truth, *, strict: bool = False, **columns) -> list[float]:
    """1.0 where the completion's final number equals the ground truth, else 0.0. With
    `strict`, only GSM8K's `#### N` line counts (`strict_number`): an answer without it is 0.

    >>> numeric_reward(["Answer: 12", "Answer: 13", "#### 1,000.0"], ["12", "12", "1000"])
    [1.0, 0.0, 1.0]
    >>> numeric_reward(["Answer: 12", "#### 12"], ["12", "12"], strict=True)
    [0.0, 1.0]
    """
    scores = []
    for completion, truth in zip(completions, ground_truth):
        text = completion if isinstance(completion, str) else completion_text(completion)
        truth = str(truth)
        predicted = strict_number(text) if strict else _last_number(text, truth)
        expected = _gold(truth)
        scores.append(float(predicted is not None and expected is not None and canonical(predicted) == expected))
    return scores


def _hedges(text: str, found, truth: str) -> bool:
    """Whether the final answer names two or more values (answers.hedged): the rest of the line
    of the last `Answer:` / `####` / `answer is` match `found` (what this reward reads), or else
    the last marked answer (a tag, a box). `_last_number` calls it only where `found` does not
    end its line."""
    if found is not None:
        end = text.find("\n", found.start(1))
        return hedged(text[found.start(1) : end if end >= 0 else len(text)], truth)
    marked = last_marker(text)
    return bool(marked and marked.answer and hedged(marked.answer, truth))


numeric_reward.unreadable_truth = unreadable_truth


def gsm8k_reward(completions, ground_truth, **columns) -> list[float]:
    """`numeric` with GSM8K's strict rule: the verifier verl's `openai/gsm8k` data_source names.

    >>> gsm8k_reward(["The answer is 7", "#### 7"], ["7", "7"])
    [0.0, 1.0]
    """
    return numeric_reward(completions, ground_truth, strict=True)


gsm8k_reward.unreadable_truth = unreadable_truth
