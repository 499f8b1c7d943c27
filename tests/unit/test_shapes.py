"""Hub dataset shapes (issue 13, "Data shapes"): each fixture is shaped like a row of the named
dataset as its dataset card shows it, loaded through load_source as a user's file would be."""

import json

import pytest

from posttrain.data.loading import load_source
from posttrain.errors import DataError
from posttrain.recipe.schema import DataSource

ULTRAFEEDBACK = {  # HuggingFaceH4/ultrafeedback_binarized, train_prefs
    "prompt": "Which is the largest planet?",
    "prompt_id": "1f4a",
    "chosen": [{"content": "Which is the largest planet?", "role": "user"},
               {"content": "Jupiter is the largest planet in the solar system.", "role": "assistant"}],
    "rejected": [{"content": "Which is the largest planet?", "role": "user"},
                 {"content": "Saturn.", "role": "assistant"}],
    "messages": [{"content": "Which is the largest planet?", "role": "user"},
                 {"content": "Jupiter is the largest planet in the solar system.", "role": "assistant"}],
    "score_chosen": 8.5, "score_rejected": 4.0,
}
TULU3_PREFERENCE = {  # allenai/llama-3.1-tulu-3-8b-preference-mixture
    "id": "allenai/tulu-3-sft-reused-on-policy-8b_0",
    "source": "allenai/tulu-3-sft-reused-on-policy-8b",
    "prompt": "Write a haiku about autumn.",
    "chosen": [{"content": "Write a haiku about autumn.", "role": "user"},
               {"content": "Crisp leaves drift and fall / ...", "role": "assistant"}],
    "rejected": [{"content": "Write a haiku about autumn.", "role": "user"},
                 {"content": "Autumn is a season.", "role": "assistant"}],
}
MULTI_TURN_PAIR = {  # chosen/rejected conversations only, sharing two turns before the answer
    "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
               {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
    "rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                 {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
}
ALPACA = {  # tatsu-lab/alpaca
    "instruction": "Classify the sentiment of the sentence.",
    "input": "I loved the film.",
    "output": "Positive",
    "text": "Below is an instruction that describes a task...",
}
ALPACA_NO_INPUT = {"instruction": "Give three tips for staying healthy.", "input": "", "output": "1. Eat well..."}
SHAREGPT = {  # LLaMA-Factory's sharegpt format
    "conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"},
                      {"from": "human", "value": "And 3+3?"}, {"from": "gpt", "value": "6"}],
    "system": "You are a calculator.",
}
GSM8K = {  # openai/gsm8k, main
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                "How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
              "altogether in April and May.\n#### 72",
}
MATH = {  # hendrycks competition_math
    "problem": "What is $\\frac{1}{2} + \\frac{1}{4}$?", "level": "Level 1", "type": "Prealgebra",
    "solution": "We have $\\frac{1}{2} + \\frac{1}{4} = \\boxed{\\frac{3}{4}}$.",
}


def _load(tmp_path, rows, kind, **source):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_source(DataSource(path=str(path), **source), kind).records


@pytest.mark.parametrize("row", [ULTRAFEEDBACK, TULU3_PREFERENCE], ids=["ultrafeedback", "tulu3"])
def test_a_text_prompt_with_full_conversations_becomes_a_chat_prompt_and_answers(tmp_path, row):
    # issue 13 point 1: TRL crashed in tokenize_fn on these rows (str prompt + message lists)
    [record] = _load(tmp_path, [row], "preference")
    assert record["prompt"] == [row["chosen"][0]]
    assert record["chosen"] == [row["chosen"][1]] and record["rejected"] == [row["rejected"][1]]


def test_conversations_without_a_prompt_split_at_their_shared_turns(tmp_path):
    [record] = _load(tmp_path, [MULTI_TURN_PAIR], "preference")
    assert [m["content"] for m in record["prompt"]] == ["Hi", "Hello!", "2+2?"]
    assert record["chosen"] == [{"role": "assistant", "content": "4"}]


def test_a_chat_prompt_with_text_answers_gets_assistant_turns(tmp_path):
    row = {"prompt": [{"role": "user", "content": "Q"}], "chosen": "good", "rejected": "bad"}
    [record] = _load(tmp_path, [row], "preference")
    assert record["chosen"] == [{"role": "assistant", "content": "good"}]


def test_alpaca_keeps_its_input(tmp_path):
    # issue 13 point 10: renamed alpaca records lost `input` (412 of 999 records)
    # one answer: a chat prompt and its completion, so the loss covers the answer only (as
    # LLaMA-Factory and axolotl train alpaca rows by default)
    records = _load(tmp_path, [ALPACA, ALPACA_NO_INPUT], "sft")
    assert records[0]["prompt"] == [{"role": "user", "content": "Classify the sentiment of the sentence.\nI loved the film."}]
    assert records[0]["completion"] == [{"role": "assistant", "content": "Positive"}]
    assert records[1]["prompt"][0]["content"] == "Give three tips for staying healthy."


def test_sharegpt_becomes_messages_with_its_system_turn(tmp_path):
    [record] = _load(tmp_path, [SHAREGPT], "sft")
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert record["messages"][0]["content"] == "You are a calculator."


def test_a_one_answer_sharegpt_row_becomes_prompt_and_completion(tmp_path):
    row = {"conversations": [{"from": "human", "value": "Who are you?"}, {"from": "gpt", "value": "An assistant."}]}
    [record] = _load(tmp_path, [row], "sft")
    assert record == {"prompt": [{"role": "user", "content": "Who are you?"}],
                      "completion": [{"role": "assistant", "content": "An assistant."}]}


DPO_EN_DEMO = {  # LLaMA-Factory's data/dpo_en_demo.json (ranking: true, formatting: sharegpt)
    "conversations": [{"from": "human", "value": "Describe a sunset in one line."}],
    "chosen": {"from": "gpt", "value": "The sky melts into amber and rose."},
    "rejected": {"from": "gpt", "value": "Sunset."},
}


def test_sharegpt_ranking_rows_become_chat_pairs(tmp_path):
    [record] = _load(tmp_path, [DPO_EN_DEMO], "preference")
    assert record["prompt"] == [{"role": "user", "content": "Describe a sunset in one line."}]
    assert record["chosen"] == [{"role": "assistant", "content": "The sky melts into amber and rose."}]
    assert record["rejected"] == [{"role": "assistant", "content": "Sunset."}]


def test_sharegpt_with_a_speaker_posttrain_does_not_read_names_it(tmp_path):
    row = {"conversations": [{"from": "human", "value": "x"}, {"from": "function_call", "value": "{}"}]}
    with pytest.raises(DataError, match=r"data.jsonl:1: conversations\[1\].from is 'function_call'"):
        _load(tmp_path, [row], "sft")


@pytest.mark.parametrize("row,truth,verifier", [(GSM8K, "72", "numeric"), (MATH, "\\frac{3}{4}", "math")],
                         ids=["gsm8k", "math"])
def test_gsm8k_and_math_rows_are_tasks_without_a_format_key(tmp_path, row, truth, verifier):
    [record] = _load(tmp_path, [row], "task")
    assert record["ground_truth"] == truth and record["verifier"] == verifier


def test_columns_can_drop_as_well_as_rename(tmp_path):
    row = {"question": "Q?", "response": "A.", "noise": 1}
    [record] = _load(tmp_path, [row], "sft", columns={"question": "prompt", "response": "completion", "noise": None})
    assert record == {"prompt": "Q?", "completion": "A."}


def test_an_unrecognised_shape_lists_the_columns_found_and_the_shapes_read(tmp_path):
    with pytest.raises(DataError) as error:
        _load(tmp_path, [{"query": "q", "reply": "r"}], "sft")
    message = str(error.value)
    assert "['query', 'reply']" in message and "alpaca (instruction+input+output)" in message
    assert "ShareGPT" in message
