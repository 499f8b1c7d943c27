"""Record formats, checked one record at a time so errors can say file:line.

SFT:        {"messages": [{"role": ..., "content": ...}, ...]}
            {"prompt": str | messages, "completion": str | messages}
Preference: {"prompt": ..., "chosen": ..., "rejected": ...}
Task:       {"prompt": ..., "ground_truth": ...}   (extra columns are kept for rewards)
Prompts:    {"prompt": ...}   (a task record whose ground truth is optional: on-policy distillation,
            online DPO with a reward model; extra columns are kept for rewards)
Unpaired:   {"prompt": ..., "completion": ..., "label": true | false}   (KTO; preference pairs
            are accepted too, and become one desirable and one undesirable record each)
Steps:      {"prompt": ..., "completions": [str, ...], "labels": [true | false, ...]}   (a process
            reward model: one label per step, TRL's stepwise-supervision format)
"""

from __future__ import annotations

ROLES = {"system", "user", "assistant", "tool"}

# Which columns each method trains on; extra columns of a task record ride along for rewards.
PROMPT_KINDS = ("task", "prompts")  # records a method generates from: every column is kept
FORMATS = {
    "sft": [("messages",), ("prompt", "completion")],
    "task": [("prompt", "ground_truth")],
    "prompts": [("prompt",)],
    "preference": [("prompt", "chosen", "rejected"), ("chosen", "rejected")],
    "unpaired": [("prompt", "completion", "label"), ("prompt", "chosen", "rejected"), ("chosen", "rejected")],
    "steps": [("prompt", "completions", "labels")],
}


def _steps_problem(record: dict) -> str | None:
    steps, labels = record["completions"], record["labels"]
    if steps == []:
        return "'completions' is empty: a record with no steps (the source's empty_steps: skip skips and counts them)"
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        return "'completions' must be a non-empty list of non-empty step texts"
    if not isinstance(labels, list) or not all(isinstance(x, bool) for x in labels):
        return "'labels' must be a list of true (a correct step) or false"
    if len(labels) != len(steps):
        return f"'labels' has {len(labels)} labels for {len(steps)} steps; give one label per step"
    return None


def _message_problem(messages, key: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"'{key}' must be a non-empty list of messages"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"'{key}[{i}]' must be an object with 'role' and 'content'"
        if message.get("role") not in ROLES:
            return f"'{key}[{i}].role' is {message.get('role')!r}; expected one of {sorted(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"'{key}[{i}].content' must be a string"
    return None


def _text_or_messages_problem(value, key: str, allow_empty: bool = False) -> str | None:
    if isinstance(value, str):
        return None if value or allow_empty else f"'{key}' is empty"
    if allow_empty and value == []:
        return None
    return _message_problem(value, key)


def record_problem(record, kind: str) -> str | None:
    """Why `record` is not a valid `kind` record, or None if it is."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for columns in FORMATS[kind]:
        if all(c in record for c in columns):
            if columns == ("messages",):
                problem = _message_problem(record["messages"], "messages")
                if problem is None and not any(m["role"] == "assistant" for m in record["messages"]):
                    problem = "'messages' has no assistant turn to train on"
                if problem is None and record["messages"][-1]["role"] != "assistant":
                    problem = (f"'messages' ends with a {record['messages'][-1]['role']} turn, which nothing answers; "
                               "end each conversation with the assistant's turn")
                return problem
            if kind == "task" and record.get("ground_truth") is None:
                return "'ground_truth' is null; a task record needs the answer its verifier checks"
            if kind == "steps":
                return _text_or_messages_problem(record["prompt"], "prompt") or _steps_problem(record)
            if "label" in columns and not isinstance(record["label"], bool):
                return f"'label' must be true (a desirable completion) or false, got {record['label']!r}"
            for column in columns:
                if column not in ("ground_truth", "label"):
                    # An empty side of a preference pair is not malformed: DPO drops and counts it.
                    allow_empty = kind in ("preference", "unpaired") and column in ("chosen", "rejected")
                    problem = _text_or_messages_problem(record[column], column, allow_empty)
                    if problem:
                        return problem
            return None
    wanted = " or ".join("+".join(c) for c in FORMATS[kind])
    return f"a {kind} record needs {wanted}; this one has {sorted(record) or 'no keys'}"


def shape(record: dict, kind: str) -> tuple:
    """The record's format columns, each with whether it is text or messages: the records of one
    dataset must agree on it (TRL cannot batch a string prompt with a message-list one). Steps
    records are tokenised by posttrain one by one (trainers/prm.py), so they may mix."""
    if kind == "steps":
        return ()
    return tuple((c, "messages" if isinstance(record.get(c), list) else type(record.get(c)).__name__)
                 for c in format_columns(record, kind) if c in ("messages", "prompt", "completion", "chosen", "rejected"))


def describe_shape(columns: tuple) -> str:
    return ", ".join(f"{c} as {'text' if t == 'str' else t}" for c, t in columns)


def format_columns(record: dict, kind: str) -> tuple[str, ...]:
    for columns in FORMATS[kind]:
        if all(c in record for c in columns):
            return columns
    raise ValueError(record_problem(record, kind))
