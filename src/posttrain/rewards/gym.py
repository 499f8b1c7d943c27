"""`reasoning_gym`: a reasoning-gym record scored by its dataset's own `score_answer`.

The record's `ground_truth` (tasks/gym.py) holds the dataset's name, its options and the entry.
The answer is the completion's final answer (an `<answer>` tag, `Answer:` line, `\\boxed{}`, as
rewards/answers.py finds them); reasoning-gym's score (0 to 1, partial credit where the dataset
gives it) is the reward. Scoring runs in bounded worker processes (rewards/bounded.py): each
answer gets `timeout` seconds, and one that runs past it, or raises, scores 0.
"""

from __future__ import annotations

import json
from functools import lru_cache

from posttrain.rewards.answers import extract_final_answer
from posttrain.rewards.bounded import BoundedPool
from posttrain.rewards.numeric import completion_text


@lru_cache(maxsize=64)
def _scorer(name: str, options: str):
    import reasoning_gym

    return reasoning_gym.create_dataset(name, seed=0, size=1, **json.loads(options)).score_answer


def score_one(name: str, options: str, answer: str | None, entry: dict) -> float:
    """reasoning-gym's score for one answer (runs in a worker)."""
    return float(_scorer(name, options)(answer, entry))


@lru_cache(maxsize=8)
def _pool(seconds: float, processes: int | None) -> BoundedPool:
    return BoundedPool(seconds, processes)


def gym_reward(completions, ground_truth, *, timeout: float = 5.0, processes: int | None = None,
               **columns) -> list[float]:
    """reasoning-gym's own score of each completion's final answer.

    >>> import json
    >>> truth = json.dumps({"dataset": "chain_sum", "options": {}, "entry": {"question": "4 - 1 - 7 =",
    ...                     "answer": "-4", "metadata": {}}})
    >>> gym_reward(["4 - 1 = 3, 3 - 7 = -4\\nAnswer: -4", "Answer: 4"], [truth, truth])
    [1.0, 0.0]
    """
    items = []
    for completion, truth in zip(completions, ground_truth):
        truth = json.loads(truth) if isinstance(truth, str) else truth
        answer = extract_final_answer(completion_text(completion))
        items.append((truth["dataset"], json.dumps(truth.get("options") or {}, sort_keys=True), answer, truth["entry"]))
    results = _pool(float(timeout), processes).map(score_one, items)
    return [max(0.0, min(1.0, float(value))) if status == "ok" else 0.0 for status, value in results]


def unreadable_truth(record: dict) -> str | None:
    """Why `reasoning_gym` cannot read the record's ground truth (None: it can): a JSON object
    with the dataset's name and its entry, as tasks/gym.py writes it."""
    truth = record.get("ground_truth")
    try:
        truth = json.loads(truth) if isinstance(truth, str) else truth
        if not isinstance(truth, dict) or not isinstance(truth.get("dataset"), str) or not isinstance(truth.get("entry"), dict):
            raise ValueError
    except (ValueError, TypeError):
        return "ground truth is not a reasoning-gym record (JSON with 'dataset' and 'entry', as task: reasoning_gym/<name> writes)"
    return None


gym_reward.unreadable_truth = unreadable_truth
