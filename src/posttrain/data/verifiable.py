"""Map public verifiable datasets onto posttrain's task format:

    {"prompt": [{"role": "user", "content": ...}], "ground_truth": str, "verifier": reward name,
     ...the source's other columns}

Chosen per source with `format:` in a recipe, e.g. `{hub: openai/gsm8k, name: main, format: gsm8k}`.
"""

from __future__ import annotations

from posttrain.rewards.answers import last_boxed


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def from_gsm8k(record: dict) -> dict:
    """GSM8K: `question`, `answer` ending in '#### 72'."""
    answer = record["answer"]
    if "####" not in answer:
        raise ValueError("GSM8K answer has no '#### <number>' line")
    final = answer.rsplit("####", 1)[1].strip().replace(",", "")
    return {"prompt": _user(record["question"]), "ground_truth": final, "verifier": "numeric",
            "solution": answer, "completion": _assistant(answer)}


def from_math(record: dict) -> dict:
    """MATH (Hendrycks): `problem`, `solution` with the answer in its last \\boxed{}."""
    answer = record.get("answer") or last_boxed(record["solution"])
    if answer is None:
        raise ValueError("MATH solution has no \\boxed{} answer")
    extra = {k: record[k] for k in ("level", "type", "subject") if k in record}
    solution = record.get("solution", "")
    worked = {"completion": _assistant(solution)} if solution else {}  # SFT on worked solutions
    return {"prompt": _user(record["problem"]), "ground_truth": answer, "verifier": "math",
            "solution": solution, **worked, **extra}


TULU_VERIFIERS = {"gsm8k": "numeric", "math": "math", "ifeval": "ifeval"}


def from_tulu3_rlvr(record: dict) -> dict:
    """Tulu 3 RLVR (allenai/RLVR-*): `messages` (the prompt), `ground_truth`, and `dataset`
    naming the verifier (gsm8k, MATH, ifeval)."""
    dataset = str(record["dataset"])
    verifier = TULU_VERIFIERS.get(dataset.lower())
    if verifier is None:
        raise ValueError(f"unknown Tulu dataset {dataset!r} (known: {', '.join(TULU_VERIFIERS)})")
    messages = [m for m in record["messages"] if m["role"] != "assistant"]
    return {"prompt": messages, "ground_truth": record["ground_truth"], "verifier": verifier,
            "dataset": dataset}


FORMATS = {"gsm8k": from_gsm8k, "math": from_math, "tulu3_rlvr": from_tulu3_rlvr}
