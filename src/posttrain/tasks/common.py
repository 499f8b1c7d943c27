"""What every generated task shares: the hash split that keeps train and held-out disjoint, and
drawing distinct problems."""

from __future__ import annotations

import hashlib
import random


HELDOUT_BUCKETS = 5  # one problem in 20 (by hash) belongs to the held-out split
HASH_BUCKETS = 100


def split_of(problem: str) -> str:
    bucket = int(hashlib.sha256(problem.encode()).hexdigest(), 16) % HASH_BUCKETS
    return "heldout" if bucket < HELDOUT_BUCKETS else "train"


def distinct(n: int, split: str, rng: random.Random, make) -> list[dict]:
    """`n` records from `make(rng)` (a question and its record, or None to skip) whose questions
    are distinct and belong to `split`."""
    seen: set[str] = set()
    records = []
    attempts = 0
    while len(records) < n:
        attempts += 1
        if attempts > 200 * n + 10_000:
            raise ValueError(f"could not find {n} distinct {split} problems with these options; "
                             "widen them (larger numbers, more operands)")
        made = make(rng)
        if made is None:
            continue
        question, record = made
        if question not in seen and split_of(question) == split:
            seen.add(question)
            records.append(record)
    return records
