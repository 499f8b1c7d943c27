"""Find training records that share long n-grams with evaluation records.

A training record is contaminated when its word n-grams cover at least `threshold` of some
single evaluation record's n-grams. An evaluation text shorter than n words must appear whole.

Defaults, and why: n = 8 words, threshold = 0.5. Eight-word runs rarely repeat by chance in
natural text. GPT-3 used 13-grams and Tulu 3 used 8-gram matching against its evaluation suites.
Requiring half of an evaluation item's n-grams, rather than any single shared n-gram, keeps
shared boilerplate (an instruction template, "Let's think step by step") from flagging
everything, while a copied question, even reworded at its edges, is still caught.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

DEFAULT_N, DEFAULT_THRESHOLD = 8, 0.5


def record_text(record: dict) -> str:
    """Every text field of a record: messages' contents, prompt, completion, chosen, rejected."""
    parts = []
    for key in ("messages", "prompt", "completion", "chosen", "rejected", "question", "problem"):
        value = record.get(key)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [m.get("content", "") for m in value if isinstance(m, dict)]
    return "\n".join(parts)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass
class EvalIndex:
    n: int
    index: dict[tuple, list[int]] = field(default_factory=lambda: defaultdict(list))
    sizes: list[int] = field(default_factory=list)
    short: list[tuple[int, str]] = field(default_factory=list)  # texts shorter than n words

    @classmethod
    def build(cls, texts: list[str], n: int = DEFAULT_N) -> "EvalIndex":
        built = cls(n)
        for i, text in enumerate(texts):
            tokens = words(text)
            grams = ngrams(tokens, n)
            built.sizes.append(len(grams))
            if len(tokens) < n:
                built.short.append((i, " ".join(tokens)))
            else:
                for gram in grams:
                    built.index[gram].append(i)
        return built

    def overlap(self, text: str) -> tuple[float, int | None]:
        """The largest share of one evaluation record's n-grams found in `text`, and which."""
        tokens = words(text)
        hits: dict[int, int] = defaultdict(int)
        for gram in ngrams(tokens, self.n):
            for i in self.index.get(gram, ()):
                hits[i] += 1
        joined = f" {' '.join(tokens)} "
        for i, short in self.short:
            if short and f" {short} " in joined:
                hits[i] = self.sizes[i]
        if not hits:
            return 0.0, None
        best = max(hits, key=lambda i: hits[i] / self.sizes[i])
        return hits[best] / self.sizes[best], best


def contaminated(records: list[dict], index: EvalIndex, threshold: float = DEFAULT_THRESHOLD) -> list[int]:
    """Indices of the records whose overlap with some evaluation record reaches `threshold`."""
    return [i for i, record in enumerate(records) if index.overlap(record_text(record))[0] >= threshold]
