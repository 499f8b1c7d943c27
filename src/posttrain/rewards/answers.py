"""Find the final answer in a model's text: whichever of \\boxed{...}, <answer>...</answer>,
"the final answer is ...", "#### ..." and "Answer: ..." comes last.

Linear time on any input: every search is for a literal marker, and the answer is cut out by
index, never by a pattern that can backtrack (tests/unit/test_rewards.py runs 1 MB inputs).
"""

from __future__ import annotations

import re
from typing import NamedTuple

MAX_ANSWER_CHARS = 1000  # an "answer" longer than this is not an answer

_FINAL_IS = re.compile(r"final answer is", re.I)
_HASHES = re.compile(r"^####", re.M)
_ANSWER_LINE = re.compile(r"^Answer:", re.M)


class Marked(NamedTuple):
    kind: str  # "boxed", "tag", "final", "hashes", "line"
    start: int  # where the marker begins
    answer: str | None  # the text it marks (None: unbalanced braces, an unclosed tag)


def _last(pattern: re.Pattern, text: str) -> re.Match | None:
    found = None
    for found in pattern.finditer(text):
        pass
    return found


def _boxed_content(text: str, start: int) -> str | None:
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text) and depth:
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    return text[begin : i - 1] if depth == 0 else None


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}), braces balanced.

    >>> last_boxed(r"so \\boxed{1} then \\boxed{\\frac{1}{2}}")
    '\\\\frac{1}{2}'
    """
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    return None if start < 0 else _boxed_content(text, start)


def _rest_of_line(text: str, begin: int) -> str:
    end = text.find("\n", begin)
    return text[begin : end if end >= 0 else len(text)]


def last_marker(text: str) -> Marked | None:
    """The marker that comes last in `text`, and what it marks."""
    found: list[Marked] = []
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start >= 0:
        found.append(Marked("boxed", start, _boxed_content(text, start)))
    start = text.rfind("<answer>")
    if start >= 0:
        end = text.find("</answer>", start)
        found.append(Marked("tag", start, text[start + 8 : end] if end >= 0 else None))
    for kind, pattern in (("final", _FINAL_IS), ("hashes", _HASHES), ("line", _ANSWER_LINE)):
        match = _last(pattern, text)
        if match:
            rest = _rest_of_line(text, match.end()).strip()
            if kind == "final":
                rest = rest.removeprefix(":").strip()
                rest = rest[:-1].rstrip() if rest.endswith(".") else rest
            found.append(Marked(kind, match.start(), rest))
    return max(found, key=lambda m: m.start) if found else None


def extract_final_answer(text: str) -> str | None:
    """The final answer in `text`, or None.

    >>> extract_final_answer("work... <answer> 42 </answer>")
    '42'
    >>> extract_final_answer("Thus the final answer is $\\\\frac{3}{4}$.")
    '$\\\\frac{3}{4}$'
    >>> extract_final_answer("steps\\n#### 1,234")
    '1,234'
    >>> extract_final_answer(r"first \\boxed{3}; no wait, the final answer is 4.")
    '4'
    """
    marked = last_marker(text)
    answer = marked.answer.strip() if marked and marked.answer else None
    return answer if answer and len(answer) <= MAX_ANSWER_CHARS else None


# ----------------------------------------------------------------------------- hedges

_HEDGE_WORD = re.compile(r"\b(?:or|either|maybe|possibly|perhaps|otherwise)\b|\\lor\b|\\vee\b", re.I)
_SEPARATOR = re.compile(r";|,\s|\band\b|\\text\{\s*", re.I)
_SPACE = re.compile(r"\s+")
# Anything that could separate two values: without one (most answers), nothing more is done.
_HINT = re.compile(r";|,\s|\b(?:or|either|maybe|possibly|perhaps|otherwise|and)\b|\\lor|\\vee", re.I)


def _top_level_parts(text: str) -> list[str]:
    """`text` split at hedge words and, outside brackets, at `;`, `, `, `and` and `\\text{`;
    each part trimmed of spaces and punctuation, empty ones dropped."""
    parts, depth, start = [], 0, 0
    cuts = [(match.start(), match.end()) for match in _HEDGE_WORD.finditer(text)]
    for i, c in enumerate(text):
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth = max(0, depth - 1)
        elif depth == 0:
            match = _SEPARATOR.match(text, i)
            if match:
                cuts.append((i, match.end()))
    for begin, end in sorted(cuts):
        if begin >= start:
            parts.append(text[start:begin])
            start = end
    parts.append(text[start:])
    cleaned = []
    for part in parts:
        part = _SPACE.sub(" ", part.replace("$", " ").replace("\\text{", " ").replace("(", " ").replace(")", " ")
                          ).strip(" .:;,!?{}")
        if part:
            cleaned.append(part)
    return cleaned


def hedged(answer: str | None, gold: str) -> bool:
    """Whether a final answer names two or more different values where the gold answer names
    one: "12 or 7", "either A or B", "12 (maybe 7)", "12, 7", "12; 7", "12 and 7". Such an
    answer scores 0 in math, numeric and reasoning_gym (docs/rewards.md): a policy that hedges
    between its two best guesses would otherwise double its hit rate.

    >>> hedged("$12$ or 7", "12"), hedged("12", "12"), hedged("1,234", "1234"), hedged("(1, 2)", "(1, 2)")
    (True, False, False, False)
    >>> hedged("2, 3", "2, 3"), hedged("2, 3", "2"), hedged(r"12 \\text{ or } 7", "7"), hedged("B or C", "B")
    (False, True, True, True)
    """
    if not answer or not _HINT.search(answer):
        return False
    parts = _top_level_parts(answer)
    if len({_SPACE.sub("", p).lower() for p in parts}) < 2:
        return False
    gold_parts = _top_level_parts(str(gold))
    if _HEDGE_WORD.search(answer) and not _HEDGE_WORD.search(str(gold)):
        return True
    return len(gold_parts) < 2
