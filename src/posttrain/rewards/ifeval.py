"""`ifeval`: instruction-following constraints (IFEval; Tulu 3 RLVR), checked as the reference
implementation (Google's, as lm-evaluation-harness ships it) checks them, in IFEval's strict
mode or (`loose: true`) its loose one; scored as the fraction followed, or all or nothing with
`prompt_level: true`. docs/rewards.md lists where it differs and why.

The constraints are data in the task record, in any of three shapes:

- IFEval's: `instruction_id_list: ["keywords:existence", ...]`, `kwargs: [{"keywords": [...]}, ...]`
- posttrain's: `constraints: [{"type": "keywords:existence", "keywords": [...]}, ...]`
- Tulu 3 RLVR's: `ground_truth: '{"func_name": "verify_keywords", "keyword_list": [...]}'`

Only the text after a closing `</think>` is checked, so reasoning does not count against it.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from functools import lru_cache
from typing import Any, Callable

from posttrain.rewards.numeric import completion_text

logger = logging.getLogger(__name__)
COUNTS: Counter = Counter()  # "timeout", "error": responses scored 0 for running past the bound

# ----------------------------------------------------------------------------- text units
# As the reference implementation (Google's, as lm-evaluation-harness ships it) counts them.

_WORD = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Runs of word characters (the reference: nltk's RegexpTokenizer(r"\\w+"))."""
    return sum(1 for _ in _WORD.finditer(text))


def count_sentences(text: str) -> int:
    """Punkt sentences, with nltk's trained English model as the reference (see sentences.py)."""
    from posttrain.rewards.sentences import sentence_tokenizer

    return len(sentence_tokenizer().tokenize(text))


def _words_for_case(text: str) -> list[str]:
    """nltk's word_tokenize, the reference's tokenizer for capital words. Splitting into
    sentences first (as word_tokenize does by default) only moves sentence-final periods into
    tokens of their own, which changes no token's case."""
    from nltk.tokenize import word_tokenize

    return word_tokenize(text, preserve_line=True)


def _detect_language(text: str) -> str | None:
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0  # langdetect is random unless seeded; the reference does not seed it
    try:
        return detect(text)
    except LangDetectException:  # no letters to judge by; the reference counts it as followed
        return None


def _compare(actual: int, relation: str, target: int) -> bool:
    """IFEval's relations are "less than" and "at least"; Tulu 3's data adds the others."""
    relation = (relation or "at least").lower()
    if relation in {"at least", "no less than"}:
        return actual >= target
    if relation == "less than":
        return actual < target
    if relation in {"at most", "no more than"}:
        return actual <= target
    if relation == "more than":
        return actual > target
    if relation == "around":
        return abs(actual - target) <= max(round(target * 0.1), 1)
    if relation in {"exactly", "equal to"}:
        return actual == target
    raise ValueError(f"unknown relation {relation!r} (less than, at least, at most, more than, around, exactly)")


def _search(pattern: str, text: str, flags=re.IGNORECASE) -> re.Match | None:
    """The reference treats keywords as regular expressions; a keyword that is not a valid one
    (`c++`) is looked for as written."""
    try:
        return re.search(pattern, text, flags)
    except re.error:
        return re.search(re.escape(pattern), text, flags)


def _count(pattern: str, text: str, flags=re.IGNORECASE) -> int:
    try:
        return sum(1 for _ in re.finditer(pattern, text, flags))
    except re.error:
        return sum(1 for _ in re.finditer(re.escape(pattern), text, flags))


# ----------------------------------------------------------------------------- checks
# Each check takes the response and the instruction's arguments (IFEval's kwargs names) and
# returns a bool, as the reference's check_following does, in linear time on any input.


def keywords_existence(text, keywords):
    return all(_search(k, text) for k in keywords)


def keywords_forbidden(text, forbidden_words):
    return not any(_search(r"\b" + w + r"\b", text) for w in forbidden_words)


def keywords_frequency(text, keyword, frequency, relation="at least"):
    return _compare(_count(keyword.strip(), text), relation, frequency)  # substrings, as the reference


def letter_frequency(text, letter, let_frequency, let_relation="at least"):
    return _compare(text.lower().count(letter.strip().lower()), let_relation, let_frequency)


def response_language(text, language):
    detected = _detect_language(text)
    return detected is None or detected == language


def number_words(text, num_words, relation="at least"):
    return _compare(count_words(text), relation, num_words)


def number_sentences(text, num_sentences, relation="at least"):
    return _compare(count_sentences(text), relation, num_sentences)


_DIVIDER = re.compile(r"\s?\*\*\*\s?")


def number_paragraphs(text, num_paragraphs):
    """Paragraphs separated by the markdown divider `***` (empty ones only at either end)."""
    paragraphs = _DIVIDER.split(text)
    count = len(paragraphs)
    for index, paragraph in enumerate(paragraphs):
        if not paragraph.strip():
            if index in (0, len(paragraphs) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


def nth_paragraph_first_word(text, num_paragraphs, nth_paragraph, first_word):
    """Paragraphs separated by a blank line ("\n\n"); the nth starts with `first_word`."""
    paragraphs = text.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if nth_paragraph > count:
        return False
    paragraph = paragraphs[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for letter in word:
        if letter in {".", ",", "?", "!", "'", '"'}:
            break
        first += letter.lower()
    return count == num_paragraphs and first == first_word.lower()


def postscript(text, postscript_marker):
    """The marker anywhere (`P.S.` also as `p. s.`, `P.P.S` as `p. p. s`), case-insensitive."""
    text = text.lower()
    if postscript_marker == "P.P.S":
        pattern = r"p\.\s?p\.\s?s"
    elif postscript_marker == "P.S.":
        pattern = r"p\.\s?s\."
    else:
        pattern = postscript_marker.lower()
    return _search(pattern, text, 0) is not None


def number_placeholders(text, num_placeholders):
    """Square-bracket placeholders `[name]` (the reference's `\\[.*?\\]`, counted in linear time:
    from each `[` to the nearest `]` on the same line)."""
    count = 0
    for line in text.split("\n"):
        i = line.find("[")
        while i >= 0:
            j = line.find("]", i + 1)
            if j < 0:
                break
            count += 1
            i = line.find("[", j + 1)
    return count >= num_placeholders


_STAR_BULLET = re.compile(r"^[^\S\n]*\*[^*].*$", re.M)
_DASH_BULLET = re.compile(r"^[^\S\n]*-.*$", re.M)


def number_bullet_lists(text, num_bullets):
    """Lines starting with `* ` or `-` (the reference's patterns, anchored per line so they
    run in linear time; they match the same lines)."""
    count = sum(1 for _ in _STAR_BULLET.finditer(text)) + sum(1 for _ in _DASH_BULLET.finditer(text))
    return count == num_bullets


def title(text):
    """A title in double angular brackets, `<<like this>>`, not empty. The reference's pattern
    `<<[^\n]+>>` is greedy: on each line it spans from the first `<<` to the last `>>`, which is
    found here by index, in linear time."""
    for line in text.split("\n"):
        start, end = line.find("<<"), line.rfind(">>")
        if start >= 0 and end >= start + 3 and line[start : end + 2].lstrip("<").rstrip(">").strip():
            return True
    return False


def constrained_response(text, options=("My answer is yes.", "My answer is no.", "My answer is maybe.")):
    text = text.strip()
    return any(option in text for option in options)  # case-sensitive, as the reference


_HIGHLIGHT = re.compile(r"\*[^\n*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n*]*\*\*")


def number_highlighted_sections(text, num_highlights):
    """`*highlighted*` sections, not empty. As in the reference, `**bold**` counts once: the
    double pattern finds it, the single one sees only its two empty `**`."""
    count = sum(1 for m in _HIGHLIGHT.finditer(text) if m.group().strip("*").strip())
    count += sum(1 for m in _DOUBLE_HIGHLIGHT.finditer(text)
                 if m.group().removeprefix("**").removesuffix("**").strip())
    return count >= num_highlights


def multiple_sections(text, num_sections, section_spliter="Section"):
    sections = re.split(r"\s?" + section_spliter + r"\s?\d+\s?", text)
    return len(sections) - 1 >= num_sections


def json_format(text):
    body = (text.strip().removeprefix("```json").removeprefix("```Json").removeprefix("```JSON")
            .removeprefix("```").removesuffix("```").strip())
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def repeat_prompt(text, prompt_to_repeat):
    return text.strip().lower().startswith(prompt_to_repeat.strip().lower())


def two_responses(text):
    """Two different responses separated by `******` (empty pieces only at either end)."""
    valid = []
    parts = text.split("******")
    for index, part in enumerate(parts):
        if not part.strip():
            if index not in (0, len(parts) - 1):
                return False
        else:
            valid.append(part)
    return len(valid) == 2 and valid[0].strip() != valid[1].strip()


def english_capital(text):
    if not text.isupper():
        return False
    detected = _detect_language(text)
    return detected is None or detected == "en"


def english_lowercase(text):
    if not text.islower():
        return False
    detected = _detect_language(text)
    return detected is None or detected == "en"


def capital_word_frequency(text, capital_frequency, capital_relation="at least"):
    """Words in capitals (nltk's word tokens; `I`, `A` and `U.S.` count)."""
    capitals = sum(1 for w in _words_for_case(text) if w.isupper())
    return _compare(capitals, capital_relation, capital_frequency)


def end_checker(text, end_phrase):
    """Ends with the phrase, ignoring case and quotes around the response."""
    return text.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def quotation(text):
    text = text.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


def no_comma(text):
    return "," not in text


CHECKS: dict[str, Callable[..., bool]] = {
    "keywords:existence": keywords_existence,
    "keywords:forbidden_words": keywords_forbidden,
    "keywords:frequency": keywords_frequency,
    "keywords:letter_frequency": letter_frequency,
    "language:response_language": response_language,
    "length_constraints:number_words": number_words,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "detectable_content:postscript": postscript,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:title": title,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:json_format": json_format,
    "combination:repeat_prompt": repeat_prompt,
    "combination:two_responses": two_responses,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "change_case:capital_word_frequency": capital_word_frequency,
    "startend:end_checker": end_checker,
    "startend:quotation": quotation,
    "punctuation:no_comma": no_comma,
}

# Tulu 3 RLVR's function names and argument names -> (IFEval id, {their_arg: our_arg}).
TULU_FUNCTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "verify_keywords": ("keywords:existence", {"keyword_list": "keywords"}),
    "validate_forbidden_words": ("keywords:forbidden_words", {}),
    "verify_keyword_frequency": ("keywords:frequency", {"word": "keyword", "N": "frequency"}),
    "verify_letter_frequency": ("keywords:letter_frequency", {"N": "let_frequency"}),
    "validate_response_language": ("language:response_language", {}),
    "validate_word_constraint": ("length_constraints:number_words", {"N": "num_words", "quantifier": "relation"}),
    "verify_sentence_constraint": ("length_constraints:number_sentences",
                                   {"N": "num_sentences", "quantifier": "relation"}),
    "verify_paragraph_count": ("length_constraints:number_paragraphs", {"N": "num_paragraphs"}),
    "validate_paragraphs": ("length_constraints:nth_paragraph_first_word",
                            {"N": "num_paragraphs", "i": "nth_paragraph"}),
    "verify_postscript": ("detectable_content:postscript", {}),
    "validate_placeholders": ("detectable_content:number_placeholders", {"N": "num_placeholders"}),
    "verify_bullet_points": ("detectable_format:number_bullet_lists", {"N": "num_bullets"}),
    "validate_title": ("detectable_format:title", {}),
    "validate_choice": ("detectable_format:constrained_response", {}),
    "validate_highlighted_sections": ("detectable_format:number_highlighted_sections", {"N": "num_highlights"}),
    "validate_sections": ("detectable_format:multiple_sections",
                          {"N": "num_sections", "section_splitter": "section_spliter"}),
    "validate_json_format": ("detectable_format:json_format", {}),
    "validate_repeat_prompt": ("combination:repeat_prompt", {"original_prompt": "prompt_to_repeat"}),
    "validate_two_responses": ("combination:two_responses", {}),
    "validate_uppercase": ("change_case:english_capital", {}),
    "validate_lowercase": ("change_case:english_lowercase", {}),
    "validate_frequency_capital_words": ("change_case:capital_word_frequency",
                                         {"N": "capital_frequency", "quantifier": "capital_relation"}),
    "validate_end": ("startend:end_checker", {}),
    "validate_quotation": ("startend:quotation", {}),
    "validate_no_commas": ("punctuation:no_comma", {}),
}


# ----------------------------------------------------------------------------- records


def constraints_of(instruction_id_list=None, kwargs=None, constraints=None, ground_truth=None) -> list[dict]:
    """One record's constraints as [{"type": id, **arguments}], whatever shape it came in."""
    if constraints is not None:
        return [dict(c) for c in constraints]
    if instruction_id_list is not None:
        kwargs = kwargs or [{}] * len(instruction_id_list)
        return [{"type": i, **{k: v for k, v in (a or {}).items() if v is not None}}
                for i, a in zip(instruction_id_list, kwargs)]
    if ground_truth is not None:
        data = json.loads(ground_truth) if isinstance(ground_truth, str) else dict(ground_truth)
        items = data if isinstance(data, list) else [data]
        out = []
        for item in items:
            item = dict(item)
            name = item.pop("func_name")
            if name not in TULU_FUNCTIONS:
                raise ValueError(f"unknown Tulu constraint function {name!r}")
            kind, renames = TULU_FUNCTIONS[name]
            out.append({"type": kind, **{renames.get(k, k): v for k, v in item.items() if v is not None}})
        return out
    raise ValueError("the record names no constraints (instruction_id_list/kwargs, constraints or ground_truth)")


def check(text: str, constraint: dict[str, Any]) -> bool:
    arguments = dict(constraint)
    kind = arguments.pop("type")
    if kind not in CHECKS:
        raise ValueError(f"unknown constraint type {kind!r}")
    return bool(CHECKS[kind](text, **arguments))


@lru_cache(maxsize=None)
def _signature(kind: str):
    import inspect

    return inspect.signature(CHECKS[kind])


def validate(constraint: dict[str, Any]) -> None:
    """Raise ValueError for an unknown type, a missing or unknown argument, or a relation that
    is not one; cheap, so that a malformed record is named before any response is checked."""
    arguments = dict(constraint)
    kind = arguments.pop("type", None)
    if kind not in CHECKS:
        raise ValueError(f"unknown constraint type {kind!r}")
    try:
        _signature(kind).bind("", **arguments)
    except TypeError as exc:
        raise ValueError(f"{kind}: {exc}") from None
    for name in ("relation", "let_relation", "capital_relation"):
        if name in arguments:
            _compare(0, arguments[name], 0)


def response_part(completion) -> str:
    """What is checked: the response as it is (IFEval's strict mode checks it unstripped), or,
    after a closing `</think>`, what follows it, stripped."""
    text = completion_text(completion)
    return text.rsplit("</think>", 1)[1].strip() if "</think>" in text else text


def loose_variants(text: str) -> list[str]:
    """IFEval's loose mode: the response, without its first line, its last line or both, each
    also with every `*` removed; an instruction is followed if any of them follows it."""
    lines = text.split("\n")
    cut = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [text, text.replace("*", ""), *cut, *(c.replace("*", "") for c in cut)]


def verdicts(text: str, record: list[dict], loose: bool = False) -> list[bool]:
    """Whether the response follows each instruction. An empty response follows none (as in
    the reference: it does not pass "no commas" by saying nothing)."""
    variants = loose_variants(text) if loose else [text]
    return [any(v.strip() and check(v, c) for v in variants) for c in record]


def _score(text: str, record: list[dict], loose: bool, prompt_level: bool) -> float:
    passed = verdicts(text, record, loose)
    if prompt_level:
        return float(all(passed))
    return sum(passed) / len(passed) if passed else 0.0


IN_PROCESS_CHARS = 16384  # longer responses are scored in the bounded worker pool
# langdetect takes milliseconds a response: records asking for a language are spread over cores
LANGUAGE_CHECKS = {"language:response_language", "change_case:english_capital", "change_case:english_lowercase"}


@lru_cache(maxsize=None)
def _pool(seconds: float, processes: int | None = None):
    from posttrain.rewards.bounded import BoundedPool

    return BoundedPool(seconds, processes)


def ifeval_reward(completions, instruction_id_list=None, kwargs=None, constraints=None,
                  ground_truth=None, *, prompt_level: bool = False, loose: bool = False,
                  timeout: float = 2.0, processes: int | None = None, **columns) -> list[float]:
    """Fraction of the record's instructions the response follows (IFEval's instruction-level
    accuracy); with `prompt_level: true` all or nothing (its prompt-level accuracy); with
    `loose: true` IFEval's loose mode instead of its strict one.

    Every check runs in linear time; responses longer than 16 KB are scored in worker processes
    bounded by `timeout` (score 0 past it, counted), and so are records that ask for a language
    when there are several (langdetect is slow), on up to `processes` cores. A malformed record
    raises, naming it.

    >>> ifeval_reward(["the quick brown fox jumps over the lazy dog, twice"], constraints=[[
    ...     {"type": "change_case:english_lowercase"}, {"type": "punctuation:no_comma"}]])
    [0.5]
    """
    records = []
    for i in range(len(completions)):
        try:
            record = constraints_of(
                instruction_id_list[i] if instruction_id_list else None,
                kwargs[i] if kwargs else None,
                constraints[i] if constraints else None,
                ground_truth[i] if ground_truth else None,
            )
            for c in record:
                validate(c)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"ifeval: record {i} is malformed: {exc}") from None
        records.append(record)
    texts = [response_part(c) for c in completions]
    scores: list[float] = [0.0] * len(completions)
    languages = [i for i, r in enumerate(records) if any(c["type"] in LANGUAGE_CHECKS for c in r)]
    spread = set(languages) if len(languages) > 1 and (processes or 2) > 1 else set()
    long = [i for i, t in enumerate(texts) if len(t) > IN_PROCESS_CHARS or i in spread]
    for i, text in enumerate(texts):
        if len(text) <= IN_PROCESS_CHARS and i not in spread:
            try:
                scores[i] = _score(text, records[i], loose, prompt_level)
            except (ValueError, TypeError, AttributeError) as exc:  # e.g. num_words: "five"
                raise ValueError(f"ifeval: record {i} is malformed: {type(exc).__name__}: {exc}") from None
    if long:
        results = _pool(float(timeout), processes).map(_score, [(texts[i], records[i], loose, prompt_level) for i in long])
        for i, (status, value) in zip(long, results):
            if status == "ok":
                scores[i] = value
            else:
                COUNTS[status] += 1
                logger.warning("ifeval: sample %d: %s (scored 0; %d so far)", i,
                               value or f"ran past {timeout} s", COUNTS[status])
    return scores


_score.warm_args = ("Warm up, please. It is cold.",
                    [{"type": "length_constraints:number_sentences", "num_sentences": 1},
                     {"type": "change_case:capital_word_frequency", "capital_frequency": 1},
                     {"type": "language:response_language", "language": "en"}], False, False)


def _warm(*, timeout: float = 2.0, processes: int | None = None, **_) -> None:
    _score(*_score.warm_args)  # nltk and langdetect, in this process too
    _pool(float(timeout), processes).warm(_score, *_score.warm_args)


ifeval_reward.warm = _warm


def unreadable_truth(record: dict) -> str | None:
    """Why `ifeval` cannot read the record's constraints (None: it can): IFEval's own rows
    (`instruction_id_list` + `kwargs`), posttrain's `constraints`, or Tulu 3's `ground_truth`."""
    try:
        for c in constraints_of(record.get("instruction_id_list"), record.get("kwargs"), record.get("constraints"),
                                record.get("ground_truth")):
            validate(c)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        return f"its constraints cannot be read: {exc}"
    return None


ifeval_reward.unreadable_truth = unreadable_truth


def ifeval_figures(completions: list, records: list[dict], *, timeout: float = 2.0) -> dict:
    """IFEval's four published figures for one answer per record: prompt-level (every
    instruction followed) and instruction-level (followed instructions over all instructions,
    pooled across prompts: not the mean of per-prompt fractions, which the `ifeval` reward is),
    strict and loose, as fractions.

    >>> rows = [{"instruction_id_list": ["change_case:english_lowercase", "punctuation:no_comma"], "kwargs": [{}, {}]},
    ...         {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}]
    >>> ifeval_figures(["all lower, with a comma", "no comma here"], rows)["instruction_strict"]
    0.6666666666666666
    """
    columns = {k: [r.get(k) for r in records] for k in ("instruction_id_list", "kwargs", "constraints", "ground_truth")}
    counts = [len(constraints_of(r.get("instruction_id_list"), r.get("kwargs"), r.get("constraints"), r.get("ground_truth")))
              for r in records]
    figures = {}
    for mode, loose in (("strict", False), ("loose", True)):
        fractions = ifeval_reward(completions, **columns, loose=loose, timeout=timeout)
        figures[f"prompt_{mode}"] = sum(f >= 1.0 for f in fractions) / max(1, len(records))
        figures[f"instruction_{mode}"] = sum(round(f * c) for f, c in zip(fractions, counts)) / max(1, sum(counts))
    return figures
