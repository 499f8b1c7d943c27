"""reasoning-gym (github.com/open-thought/reasoning-gym) as a task source: `task: reasoning_gym/<name>`.

    data: {train: [{task: reasoning_gym/chain_sum, n: 2000, options: {num_terms: 3, min_digits: 1}}]}

`options` are the dataset's own configuration (its difficulty knobs: reasoning_gym's
`<Name>Config` fields), passed to `reasoning_gym.create_dataset(name, seed=..., size=...)`.
Each record keeps the reasoning-gym entry (question, answer, metadata) and the options in its
`ground_truth`, and names `reasoning_gym` as its verifier, so a completion is scored by the
dataset's own `score_answer` (rewards/gym.py), never by a re-implementation here.

Splits: the generator draws entries from a dataset seeded by (seed, split) and keeps those whose
question hashes into the split (tasks/common.py), so train and held-out never share a question.
The prompt is reasoning-gym's question, after a system turn with reasoning-gym's own standard
system prompt (`instruction`, default `default`: "... provide the answer in the following format:
<answer>answer here</answer> ...", which `reasoning_gym` reads), so that a pretrained model knows
the format the verifier reads; the SFT completion is `<answer>ANSWER</answer>` to match.
`instruction: none` leaves the bare question (and `Answer: ANSWER`); any other text, or another
of reasoning-gym's prompts by name, is used instead (tasks/common.instruction_text).
"""

from __future__ import annotations

import hashlib
import json

from posttrain.tasks.common import instructed, split_of

PREFIX = "reasoning_gym/"
VERIFIER = "reasoning_gym"


def is_gym_task(name: str) -> bool:
    return name.startswith(PREFIX)


def gym_names() -> list[str]:
    import reasoning_gym

    return sorted(reasoning_gym.factory.DATASETS)


DEFAULT_INSTRUCTION = "default"  # reasoning_gym.utils.SYSTEM_PROMPTS["default"]


def check_gym_task(name: str, options: dict) -> None:
    """Raises ValueError naming the problem: an unknown dataset, options its config refuses, or a
    scorer that cannot run safely here (rewards/gym.check_gym_scoring)."""
    options = {k: v for k, v in options.items() if k != "instruction"}
    dataset = name.removeprefix(PREFIX)
    names = gym_names()
    if dataset not in names:
        from posttrain.errors import did_you_mean

        raise ValueError(f"reasoning-gym has no dataset '{dataset}'{did_you_mean(dataset, names)} "
                         f"(it has {len(names)}: {', '.join(names[:12])}, ...)")
    _dataset(dataset, options, seed=0, size=1)
    from posttrain.rewards.gym import check_gym_scoring

    check_gym_scoring(dataset)


def _dataset(name: str, options: dict, seed: int, size: int):
    import reasoning_gym

    try:
        return reasoning_gym.create_dataset(name, seed=seed, size=size, **options)
    except TypeError as exc:  # an option the config does not have
        raise ValueError(f"reasoning_gym/{name}: {str(exc).split('__init__() ')[-1]}") from None
    except (ValueError, AssertionError) as exc:  # the config's own validation
        raise ValueError(f"reasoning_gym/{name}: {exc or 'options refused by its config'}") from None


def _seed(seed: int, split: str) -> int:
    return int(hashlib.sha256(f"reasoning_gym/{seed}/{split}".encode()).hexdigest(), 16) % 2**31


def gym_task(name: str, n: int, split: str = "train", seed: int = 0, instruction: str | None = DEFAULT_INSTRUCTION,
             **options) -> list[dict]:
    """`n` records of reasoning-gym's dataset `name` for `split`, distinct by question, with the
    answer-format instruction (module docstring)."""
    dataset_name = name.removeprefix(PREFIX)
    size = 40 * n + 1000  # held-out keeps 1 question in 20
    dataset = _dataset(dataset_name, options, seed=_seed(seed, split), size=size)
    records, seen = [], set()
    for index in range(size):
        entry = dataset[index]
        question = entry["question"]
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        entry = json.loads(json.dumps(entry, default=str))  # JSON-safe, as it will be stored
        records.append({
            "prompt": [{"role": "user", "content": question}],
            "completion": [{"role": "assistant", "content": f"Answer: {entry['answer']}"}],
            "ground_truth": json.dumps({"dataset": dataset_name, "options": options, "entry": entry}),
            "verifier": VERIFIER,
        })
        if len(records) == n:
            return instructed(records, instruction)
    raise ValueError(f"{name}: only {len(records)} distinct {split} questions among {size} entries; "
                     "widen its options or ask for fewer")
