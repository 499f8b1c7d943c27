"""Every reward, on pathological model output of up to 1 MB, returns within its time bound
+ 0.5 s and does not raise (issue 17). Rewards with a worker pool are given a 0.5 s bound here
to keep the test short; bench/rewards.py measures the default bounds, and what a replacement
worker costs after a kill."""

import time

import pytest

from posttrain.rewards import REWARDS, build_reward
from posttrain.rewards.sandbox import sandbox_problem

MB = 1 << 20
PATHOLOGICAL = {
    "spaces": " " * MB,
    "newlines": "\n" * MB,
    "final answer is + spaces": "The final answer is" + " " * MB,
    "#### + spaces": "####" + " " * MB + "x",
    "Answer: + spaces": "Answer:" + " " * MB + "x",
    "open boxes": "\\boxed{" * (MB // 7),
    "deep braces": "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}",
    "tower": "\\boxed{" + "9^{" * 20_000 + "9" + "}" * 20_001,
    "digits": "Answer: " + "9" * MB,
    "digits with commas": "1," * (MB // 2),
    "stars": "*" * MB,
    "brackets": "[" * MB,
    "angles": "<<" * (MB // 2),
    "dots": ". " * (MB // 2),
    "postscripts": "p." * (MB // 2),
    "dividers": "***" * (MB // 3),
    "unicode": "İ\u2028ß\u0301😀" * (MB // 8),
    "think tags": "<think>" + "</think>" * (MB // 8),
    "answer tags": "<think></think><answer>" + "</answer> x" * (MB // 10),
    "fences": "```python\n" * (MB // 10),
}

BOUNDED = {"math": {"timeout": 0.5}, "ifeval": {"timeout": 0.5}, "code": {"timeout": 0.5},
           "verifier": {"timeout": 0.5}, "reasoning_gym": {"timeout": 0.5}}
COLUMNS = {
    "numeric": {"ground_truth": ["1"]},
    "gsm8k": {"ground_truth": ["1"]},
    "math": {"ground_truth": ["1"]},
    "countdown": {"numbers": [[1, 2, 3]], "target": [6]},
    "reasoning_gym": {"ground_truth": ["{\"dataset\": \"chain_sum\", \"options\": {}, \"entry\": {\"question\": \"1 + 2 =\", \"answer\": \"3\", \"metadata\": {}}}"]},
    "ifeval": {"instruction_id_list": [[
        "length_constraints:number_sentences", "change_case:capital_word_frequency", "detectable_format:title",
        "detectable_format:number_bullet_lists", "detectable_content:postscript", "language:response_language",
        "detectable_content:number_placeholders", "length_constraints:number_paragraphs",
        "detectable_format:number_highlighted_sections", "keywords:frequency"]],
        "kwargs": [[{"num_sentences": 2, "relation": "at least"}, {"capital_frequency": 2, "capital_relation": "at least"},
                    {}, {"num_bullets": 2}, {"postscript_marker": "P.S."}, {"language": "en"},
                    {"num_placeholders": 2}, {"num_paragraphs": 2}, {"num_highlights": 2},
                    {"keyword": "x", "frequency": 2, "relation": "at least"}]]},
    "code": {"tests": [["assert f(1) == 1"]]},
    "think_format": {"prompts": ["Q"]},
    "verifier": {"verifier": ["math"], "ground_truth": ["1"]},
    "overlong_penalty": {"completion_ids": [[0] * 10]},
    "non_stop_penalty": {"completion_ids": [[0] * 10]},
}
OPTIONS = {"overlong_penalty": {"max_length": 20, "cache": 5}, "non_stop_penalty": {"max_completion_length": 20}}
COLUMNS["reward_model"] = {"prompts": ["Q"]}
COLUMNS["llm_judge"] = {"prompts": ["Q"], "ground_truth": ["1"]}


def model_options(name: str) -> dict:
    """A reward that needs a trained model gets a tiny process reward model (random head),
    built once per process, and an LLM judge the tiny causal LM itself: the bound is about the
    input, not what the model learned."""
    if name == "llm_judge":
        from posttrain.recipe import TinyModelSpec
        from posttrain.tiny import tiny_model_path

        return {"path": str(tiny_model_path(TinyModelSpec())), "device": "cpu"}
    if name != "reward_model":
        return {}
    global _TINY_PRM
    if _TINY_PRM is None:
        import tempfile

        from transformers import AutoModelForTokenClassification, AutoTokenizer

        from posttrain.recipe import TinyModelSpec
        from posttrain.tiny import tiny_model_path

        base = tiny_model_path(TinyModelSpec())
        _TINY_PRM = tempfile.mkdtemp(prefix="posttrain-tiny-prm-")
        AutoModelForTokenClassification.from_pretrained(base, num_labels=2).save_pretrained(_TINY_PRM)
        AutoTokenizer.from_pretrained(base).save_pretrained(_TINY_PRM)
    return {"path": _TINY_PRM, "device": "cpu"}


_TINY_PRM = None


def _bound(name: str) -> float:
    if name == "llm_judge":
        # A judge generates up to max_new_tokens (32) after a prompt of at most 480 tokens (the tiny
        # model's positions): measured 0.07 s alone, 0.67 s once with the suite's other work on both
        # cores. An uncut 1 MB answer would not fit the model at all; the bound checks that it is cut.
        return 2.0
    return BOUNDED.get(name, {}).get("timeout", 0.0) + 0.5


def _names():
    names = sorted(REWARDS)
    if sandbox_problem() is not None:  # the code reward refuses to run at all without the sandbox
        pytest.fail(f"bubblewrap is needed for the code reward's bound: {sandbox_problem()}")
    return names


@pytest.mark.parametrize("name", sorted(REWARDS))
def test_no_pathological_input_holds_a_reward_past_its_bound_or_makes_it_raise(name):
    assert name in _names()
    reward = build_reward(name, {**BOUNDED.get(name, {}), **OPTIONS.get(name, {}), **model_options(name)})
    slow = []
    if name in ("reward_model", "llm_judge"):  # loading the model once is not an input's cost
        reward(["warm up"], **COLUMNS.get(name, {}))
    for label, text in PATHOLOGICAL.items():
        # A worker killed at its bound is replaced by one that warms up (imports sympy or nltk)
        # in the background; the bound is per input, on warm workers, so wait for it first.
        reward.warm()
        start = time.monotonic()
        scores = reward([text], **COLUMNS.get(name, {}))
        took = time.monotonic() - start
        assert len(scores) == 1 and (scores[0] is None or isinstance(scores[0], float)), label
        if took > _bound(name):
            slow.append((label, round(took, 2)))
    assert slow == [], f"{name} took longer than {_bound(name)} s on {slow}"


def test_a_number_of_more_than_4300_digits_does_not_raise():
    # int("9" * 5000) raises ValueError in Python >= 3.11; that stopped RLVR runs before.
    assert REWARDS["numeric"](["Answer: " + "9" * 5000], ground_truth=["9"]) == [0.0]
    assert REWARDS["numeric"](["9" * 5000], ground_truth=["9" * 5000]) == [0.0]  # not an answer
