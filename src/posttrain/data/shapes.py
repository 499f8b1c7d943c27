"""The shapes the hub's most used post-training datasets come in, recognised by their columns
and mapped onto posttrain's records (formats.py) before they are checked.

| shape | columns | example datasets | becomes |
|---|---|---|---|
| preference, string prompt + conversations | `prompt` (text), `chosen`/`rejected` (messages that repeat the user turn) | HuggingFaceH4/ultrafeedback_binarized, allenai/llama-3.1-tulu-3-8b-preference-mixture | `prompt` = the turns chosen and rejected share, `chosen`/`rejected` = the rest |
| preference, conversations only | `chosen`/`rejected` (messages) | Anthropic/hh-rlhf in chat form | the same split |
| preference, chat prompt + text answers | `prompt` (messages), `chosen`/`rejected` (text) | | answers as assistant turns |
| prompt/completion, one as text and one as messages | `prompt`, `completion` | | both as messages |
| alpaca | `instruction`, `input`, `output` (+ `system`, `history`) | tatsu-lab/alpaca, LLaMA-Factory's alpaca format | chat `prompt` (system, history, instruction) + `completion` (output); `input` follows the instruction after a newline, as LLaMA-Factory joins them |
| ShareGPT | `conversations: [{from, value}]`, from human/gpt/system | LLaMA-Factory's sharegpt format, ShareGPT dumps | one answer: chat `prompt` + `completion`; several: `messages` |
| ShareGPT preference | `conversations` + `chosen`/`rejected` as one `{from, value}` each | LLaMA-Factory's ranking datasets (dpo_en_demo) | chat `prompt` + `chosen`/`rejected` |
| chat-template preference | `messages` + `chosen`/`rejected` as one `{role, content}` message each | axolotl's `chat_template` DPO datasets | chat `prompt` (the messages) + `chosen`/`rejected` |
| unpaired conversation | `messages` ending in the assistant's turn + `label` (or LLaMA-Factory's `kto_tag`) true/false | LLaMA-Factory's KTO datasets (kto_en_demo) | chat `prompt` + `completion` (the last turn) + `label` |
| verl | `prompt` (messages), `reward_model: {ground_truth, style}`, `data_source` (+ `ability`, `extra_info`) | verl's preprocessed parquet (examples/data_preprocess) | a task record: `ground_truth` from `reward_model.ground_truth`, the verifier from `data_source` where posttrain knows it (VERL_VERIFIERS), every column kept |

A single answer becomes a prompt/completion pair so that TRL's loss covers the answer only
(completion-only loss), as LLaMA-Factory and axolotl train by default, whatever chat template
the model has; several answers stay a conversation (`messages`).
| GSM8K | `question`, `answer` with `#### n` | openai/gsm8k | a task record (as `format: gsm8k`) |
| MATH | `problem`, `solution` with `\\boxed{}` | hendrycks MATH, MATH-500 | a task record (as `format: math`) |
| PRM800K | `question: {problem, ...}`, `label: {steps: [{completions: [{text, rating}], chosen_completion, human_completion}]}` | openai/prm800k (phase 1 and 2) | a steps record: the labelled trajectory (the chosen completion at each step, the labeller's own where none was chosen, and where a step has neither, the first completion rated -1 as the last step); rating +1 and 0 are correct (0: not wrong, no progress), -1 incorrect |
| Math-Shepherd | `input` with each step ending in `ки`, `label` the same text with `+` or `-` in its place | peiyi9979/Math-Shepherd | a steps record: the question (the text before `Step 1:`), the steps without their `Step n:` prefix, `+` correct |

A `system` column (text) becomes the prompt's system turn in every shape (a text prompt and its
answers then become chat turns, so that the template renders it), unless the prompt has one.

Records already in posttrain's formats pass through unchanged (a steps record in TRL's
stepwise-supervision format, `prompt` + `completions` + `labels`, as trl-lib/prm800k and
trl-lib/math_shepherd have it).
"""

from __future__ import annotations

import json

import re

from posttrain.data.verifiable import from_gsm8k, from_math

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                  "system": "system"}

ACCEPTED = {  # what an error names when a record fits nothing
    "sft": "messages; prompt+completion; alpaca (instruction+input+output); ShareGPT (conversations with from/value)",
    "preference": "prompt+chosen+rejected (text or messages, also a text prompt with full conversations); chosen+rejected; "
                  "ShareGPT ranking (conversations + chosen/rejected {from, value}); "
                  "messages + chosen/rejected {role, content} (axolotl)",
    "unpaired": "prompt+completion+label; messages+label (or kto_tag); prompt+chosen+rejected; chosen+rejected",
    "prompts": "prompt (and any other column); every task shape",
    "task": "prompt+ground_truth; GSM8K (question+answer); MATH (problem+solution); verl (prompt+reward_model.ground_truth)",
    "steps": "prompt+completions+labels (TRL's stepwise supervision); PRM800K (question+label.steps); "
             "Math-Shepherd (input+label with ки step tags)",
}

SHEPHERD_TAG = "ки"
_STEP_PREFIX = re.compile(r"^\s*Step \d+\s*:\s*")


def _prm800k_text(step: dict):
    """The text and rating of one PRM800K step of the labelled trajectory, or None where the
    trajectory ends (no completion chosen, none written, none rated -1)."""
    chosen, human = step.get("chosen_completion"), step.get("human_completion")
    completions = step.get("completions") or []
    if chosen is not None:
        return completions[chosen]["text"], completions[chosen].get("rating")
    if human is not None:
        return (human["text"] if isinstance(human, dict) else str(human)), 1
    wrong = [c for c in completions if c.get("rating") == -1]
    return (wrong[0]["text"], -1) if wrong else None


def from_prm800k(record: dict) -> dict:
    steps, labels = [], []
    for step in record["label"]["steps"]:
        found = _prm800k_text(step)
        if found is None:
            break
        text, rating = found
        steps.append(text)
        labels.append(rating != -1)
        if rating == -1:
            break  # phase 2 labels stop at the first error; what follows is unlabelled
    if not steps:
        raise ValueError("a PRM800K record with no labelled step")
    return {"prompt": record["question"]["problem"], "completions": steps, "labels": labels}


def from_math_shepherd(record: dict) -> dict:
    text, tagged = record["input"], record["label"]
    if SHEPHERD_TAG not in text:
        raise ValueError(f"a Math-Shepherd 'input' marks the end of each step with {SHEPHERD_TAG!r}; this one has none")
    parts = text.split(SHEPHERD_TAG)
    steps, labels, position = [], [], 0
    for part in parts[:-1]:
        position += len(part)
        tag = tagged[position: position + 1]
        if tag not in ("+", "-"):
            raise ValueError(f"'label' has {tag!r} where 'input' has {SHEPHERD_TAG!r} (expected + or -)")
        steps.append(part)
        labels.append(tag == "+")
        position += 1
    question, sep, first = steps[0].partition("Step 1:")
    if not sep:
        question, first = "", steps[0]
    steps[0] = first
    steps = [_STEP_PREFIX.sub("", step).strip() for step in steps]
    return {"prompt": question.strip(), "completions": steps, "labels": labels}


def _is_messages(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _shared_prefix(a: list[dict], b: list[dict]) -> int:
    n = 0
    while n < min(len(a), len(b)) - 1 and a[n] == b[n]:
        n += 1
    while n and a[n - 1].get("role") == "assistant":  # a prompt ends with a turn the answer answers
        n -= 1
    return n


def _split_pair(record: dict) -> dict:
    chosen, rejected = record["chosen"], record["rejected"]
    prompt = record.get("prompt")
    if _is_messages(chosen) and _is_messages(rejected):
        if _is_messages(prompt):  # a chat prompt the conversations repeat
            n = len(prompt)
            if chosen[:n] == prompt and rejected[:n] == prompt:
                return {**record, "chosen": chosen[n:], "rejected": rejected[n:]}
            return record
        n = _shared_prefix(chosen, rejected)
        if n:
            return {**record, "prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}
        if isinstance(prompt, str):  # the conversations hold only the answers
            return {**record, "prompt": _user(prompt)}
        return record
    if _is_messages(prompt):
        return {**record, **{k: _assistant(record[k]) for k in ("chosen", "rejected") if isinstance(record[k], str)}}
    return record


def _prompt_completion(record: dict) -> dict:
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, str) and _is_messages(completion):
        n = 0
        if completion and completion[0].get("role") != "assistant":  # the conversation repeats the prompt
            while n < len(completion) and completion[n].get("role") != "assistant":
                n += 1
            return {**record, "prompt": completion[:n], "completion": completion[n:]}
        return {**record, "prompt": _user(prompt)}
    if _is_messages(prompt) and isinstance(completion, str):
        return {**record, "completion": _assistant(completion)}
    return record


def _conversation(rest: dict, messages: list[dict]) -> dict:
    """One final answer: a chat prompt and its completion; several answers: `messages`."""
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if answers == [len(messages) - 1]:
        return {**rest, "prompt": messages[:-1], "completion": messages[-1:]}
    return {**rest, "messages": messages}


def _alpaca(record: dict) -> dict:
    instruction, extra = record["instruction"], record.get("input") or ""
    query = f"{instruction}\n{extra}" if extra else instruction
    messages = [{"role": "system", "content": record["system"]}] if record.get("system") else []
    for turn in record.get("history") or []:
        messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
    prompt = [*messages, {"role": "user", "content": query}]
    rest = {k: v for k, v in record.items() if k not in {"instruction", "input", "output", "system", "history"}}
    return {**rest, "prompt": prompt, "completion": [{"role": "assistant", "content": record["output"]}]}


def _sharegpt_turn(turn, where: str) -> dict:
    speaker = str(turn.get("from", "")).lower() if isinstance(turn, dict) else ""
    if speaker not in SHAREGPT_ROLES:
        found = turn.get("from") if isinstance(turn, dict) else turn
        raise ValueError(f"{where}.from is {found!r}; posttrain reads {', '.join(sorted(SHAREGPT_ROLES))}")
    return {"role": SHAREGPT_ROLES[speaker], "content": turn.get("value")}


def _sharegpt_messages(record: dict) -> list[dict]:
    messages = [_sharegpt_turn(turn, f"conversations[{i}]") for i, turn in enumerate(record["conversations"])]
    if record.get("system") and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": record["system"]})
    return messages


def _sharegpt(record: dict) -> dict:
    rest = {k: v for k, v in record.items() if k not in {"conversations", "system"}}
    return _conversation(rest, _sharegpt_messages(record))


def _sharegpt_pair(record: dict) -> dict:
    """LLaMA-Factory's ranking rows: the conversation so far, and one {from, value} each."""
    rest = {k: v for k, v in record.items() if k not in {"conversations", "system"}}
    return {**rest, "prompt": _sharegpt_messages(record), "chosen": [_sharegpt_turn(record["chosen"], "chosen")],
            "rejected": [_sharegpt_turn(record["rejected"], "rejected")]}


def from_ifeval(record: dict) -> dict:
    """IFEval's own rows (google/IFEval: `key`, `prompt` as text, `instruction_id_list`,
    `kwargs`): the constraints stay in their columns, where the ifeval reward reads them; the
    record names `ifeval` as its verifier and gets the constraint ids as its ground truth."""
    return {**record, "ground_truth": json.dumps(record["instruction_id_list"]),
            "verifier": record.get("verifier") or "ifeval"}


# verl's data_source -> the verifier that scores it (verl's default_compute_score): GSM8K with its
# strict `#### N` rule, the MATH sets with math.
VERL_VERIFIERS = {"openai/gsm8k": "gsm8k", "lighteval/MATH": "math", "DigitalLearningGmbH/MATH-lighteval": "math",
                  "HuggingFaceH4/MATH-500": "math"}


def from_verl(record: dict) -> dict:
    """verl's rows: the answer nested in `reward_model.ground_truth`; `data_source` names the
    verifier where posttrain knows it (else the recipe's reward scores it)."""
    truth = record["reward_model"].get("ground_truth")
    if truth is None:
        raise ValueError("'reward_model' has no 'ground_truth'")
    verifier = {} if "verifier" in record else \
        {"verifier": VERL_VERIFIERS[record["data_source"]]} if record.get("data_source") in VERL_VERIFIERS else {}
    return {**record, "ground_truth": truth, **verifier}


def _axolotl_pair(record: dict) -> dict:
    """axolotl's chat-template preference rows: the conversation so far in `messages`, and the
    two answers as one message each."""
    rest = {k: v for k, v in record.items() if k != "messages"}
    return {**rest, "prompt": record["messages"], "chosen": [record["chosen"]], "rejected": [record["rejected"]]}


def _unpaired_conversation(record: dict) -> dict:
    """LLaMA-Factory's KTO rows: a conversation whose last (assistant) turn is labelled."""
    messages = record["messages"]
    label = record["label"] if "label" in record else record["kto_tag"]
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError("'messages' must end with the assistant's turn, which 'label' rates")
    rest = {k: v for k, v in record.items() if k not in ("messages", "kto_tag")}
    return {**rest, "prompt": messages[:-1], "completion": messages[-1:], "label": label}


def as_chat(record: dict) -> dict:
    """A text record as chat turns (a data source's `apply_chat_template: true`, OpenRLHF's
    --apply_chat_template): a text prompt becomes a user turn and text answers assistant turns,
    so that the model's chat template renders them; message lists stay as they are."""
    out = dict(record)
    if isinstance(out.get("prompt"), str):
        out["prompt"] = _user(out["prompt"])
    for answer in ("completion", "chosen", "rejected"):
        if isinstance(out.get(answer), str):
            out[answer] = _assistant(out[answer])
    return out


def with_system(record: dict, kind: str) -> dict:
    """A text `system` column as the prompt's system turn (a text prompt and its answers become
    chat turns so the template renders it); kept as is where the prompt already has one."""
    system = record.get("system")
    if not isinstance(system, str) or kind == "steps":
        return record
    rest = {k: v for k, v in record.items() if k != "system"}
    key = "messages" if isinstance(rest.get("messages"), list) else "prompt"
    prompt = rest.get(key)
    if isinstance(prompt, str):
        prompt = _user(prompt)
        for answer in ("completion", "chosen", "rejected"):
            if isinstance(rest.get(answer), str):
                rest[answer] = _assistant(rest[answer])
    if not isinstance(prompt, list):
        raise ValueError("a 'system' column needs a prompt (or messages) to put it in")
    if any(isinstance(m, dict) and m.get("role") == "system" for m in prompt):
        if system and not any(m.get("content") == system for m in prompt if isinstance(m, dict)):
            raise ValueError("the record has both a 'system' column and a different system turn in its "
                             f"{key}; keep one")
        return {**rest, key: prompt}
    return {**rest, key: ([{"role": "system", "content": system}] if system else []) + prompt}


def normalise(record, kind: str):
    """`record` in posttrain's format for `kind`, if its columns are one of the shapes above
    (with a `system` column as its system turn); otherwise unchanged (formats.record_problem
    then says what is wrong). Raises ValueError for a recognised shape with a bad value."""
    return with_system(_normalise(record, kind), kind) if isinstance(record, dict) else record


def _normalise(record, kind: str):
    """`record` in posttrain's format for `kind`, if its columns are one of the shapes above;
    otherwise unchanged (formats.record_problem then says what is wrong). Raises ValueError
    for a recognised shape with a bad value."""
    if not isinstance(record, dict):
        return record
    if kind in ("preference", "unpaired") and "chosen" in record and "rejected" in record:
        if isinstance(record.get("conversations"), list) and isinstance(record["chosen"], dict):
            return _sharegpt_pair(record)
        if _is_messages(record.get("messages")) and isinstance(record["chosen"], dict) \
                and isinstance(record["rejected"], dict):
            return _axolotl_pair(record)
        return _split_pair(record)
    if kind == "unpaired" and _is_messages(record.get("messages")) and ("label" in record or "kto_tag" in record):
        return _unpaired_conversation(record)
    if "prompt" in record and "completion" in record:
        return _prompt_completion(record)
    if kind == "sft" and "messages" not in record:
        if "instruction" in record and "output" in record:
            return _alpaca(record)
        if isinstance(record.get("conversations"), list):
            return _sharegpt(record)
    if kind == "steps" and "completions" not in record:
        if isinstance(record.get("question"), dict) and isinstance(record.get("label"), dict):
            return from_prm800k(record)
        if isinstance(record.get("input"), str) and isinstance(record.get("label"), str):
            return from_math_shepherd(record)
    if kind in ("task", "prompts") and "ground_truth" not in record and isinstance(record.get("instruction_id_list"), list):
        return from_ifeval(record)
    if kind in ("task", "prompts") and "ground_truth" not in record and isinstance(record.get("reward_model"), dict):
        return from_verl(record)
    if kind in ("task", "prompts") and "prompt" not in record:
        if "question" in record and isinstance(record.get("answer"), str) and "####" in record["answer"]:
            return from_gsm8k(record)
        if "problem" in record and "solution" in record:
            return from_math(record)
    return record
