"""Rewards: table-driven, no model needed."""

import doctest
import threading
import time

import pytest

import posttrain.rewards.answers as answers
import posttrain.rewards.format as format_rewards
import posttrain.rewards.ifeval as ifeval
import posttrain.rewards.numeric as numeric
from posttrain.rewards import REWARDS, RewardError, build_reward, resolve_reward
from posttrain.rewards.math_answer import math_reward


@pytest.mark.parametrize("module", [numeric, answers, format_rewards, ifeval])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


# ----------------------------------------------------------------------------- numeric

@pytest.mark.parametrize("completion,truth,expected", [
    ("1 + 2 = 3\nAnswer: 3", "3", 1.0),
    ("Answer: 3\nAnswer: 4", "4", 1.0),          # the last marked answer counts
    ("so the total is 1,234", "1234", 1.0),       # thousands separators
    ("#### -7", "-7", 1.0),
    ("The answer is $12.50", "12.5", 1.0),
    ("Answer: 3", "4", 0.0),
    ("no number at all", "4", 0.0),
    ([{"role": "assistant", "content": "Answer: 9"}], "9", 1.0),  # chat completions
])
def test_numeric_reward(completion, truth, expected):
    assert REWARDS["numeric"]([completion], ground_truth=[truth]) == [expected]


# ----------------------------------------------------------------------------- math

@pytest.mark.parametrize("completion,gold,expected", [
    (r"so \boxed{\frac{1}{2}}", "0.5", 1.0),
    (r"\boxed{0.5}", r"\frac{1}{2}", 1.0),
    (r"\boxed{2\sqrt{2}}", r"\sqrt{8}", 1.0),
    (r"first \boxed{3}, finally \boxed{4}", "4", 1.0),     # the last box counts
    ("<answer>42</answer>", "42", 1.0),
    ("Therefore, the final answer is $x = 7$.", "7", 1.0),
    ("work\n#### 18", "18", 1.0),
    (r"\boxed{\{1, 2\}}", r"\{2, 1\}", 1.0),
    (r"\boxed{3}", "4", 0.0),
    ("no answer here", "4", 0.0),
    (r"\boxed{", "4", 0.0),                               # unbalanced
])
def test_math_reward(completion, gold, expected):
    assert math_reward([completion], [gold]) == [expected]


@pytest.mark.parametrize("completion", [
    r"\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",      # deep nesting
    r"\boxed{9^{9^{9^{9^{9}}}}}",                           # a number too big to compute
    "x" * 2_000_000 + r" \boxed{2}",                        # megabytes of text
    r"\boxed{" + "+".join(["x"] * 400) + "}",
])
def test_pathological_answers_score_within_the_time_bound(completion):
    start = time.monotonic()
    scores = math_reward([completion], ["1"], timeout=1.0)
    assert time.monotonic() - start < 4.0
    assert scores in ([0.0], [1.0])


def test_math_reward_works_off_the_main_thread():
    # math-verify's own signal-based timeout raises there; TRL runs async rewards on a thread.
    result = []
    thread = threading.Thread(target=lambda: result.append(math_reward([r"\boxed{1/2}"], ["0.5"])))
    thread.start()
    thread.join(30)
    assert result == [[1.0]]


# ----------------------------------------------------------------------------- format

@pytest.mark.parametrize("completion,prompt,expected", [
    ("<think>reason</think>\n<answer>4</answer>", "Q", 1.0),
    ("<think>reason</think><answer>4</answer> extra", "Q", 0.0),
    ("<answer>4</answer>", "Q", 0.0),
    ("reason</think>\n<answer>4</answer>", "Q\n<think>", 1.0),     # template pre-filled <think>
    ("<think>again</think><answer>4</answer>", "Q <think>", 0.0),
])
def test_think_format(completion, prompt, expected):
    assert REWARDS["think_format"]([completion], prompts=[prompt]) == [expected]


# open-r1's format_reward and tag_count_reward (src/open_r1/rewards.py at 1416fa0c), as their code
# scores these completions: one newline at each seam; re.MULTILINE lets text follow "</answer>\n".
OPEN_R1_CASES = [
    ("<think>\nreason\n</think>\n<answer>\n4\n</answer>", 1.0, 1.0),
    ("<think>\nreason\n</think>\n<answer>\n4\n</answer>\nmore text", 1.0, 1.0),   # the re.M quirk
    ("<think>reason</think>\n<answer>4</answer>", 0.0, 0.0),                          # no inner newlines
    ("<think>\nreason\n</think><answer>\n4\n</answer>", 0.0, 0.5),   # no newline between </think> and <answer>
    ("Sure! <think>\nreason\n</think>\n<answer>\n4\n</answer>", 0.0, 1.0),          # text before <think>
    ("<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n4\n</answer>", 1.0, 0.5),
    ("4", 0.0, 0.0),
]


@pytest.mark.parametrize("completion,format_score,tag_score", OPEN_R1_CASES)
def test_strict_format_and_tag_count_score_as_open_r1(completion, format_score, tag_score):
    messages = [[{"role": "assistant", "content": completion}]]
    assert REWARDS["think_format"](messages, strict=True) == [format_score]
    assert REWARDS["tag_count"](messages, strict=True) == [tag_score]


def test_overlong_and_non_stop_need_token_ids():
    with pytest.raises(ValueError, match="completion_ids"):
        REWARDS["overlong_penalty"](["a"], max_length=10, cache=2)


# ----------------------------------------------------------------------------- ifeval

IFEVAL_CASES = [  # (type, arguments, passing response, failing response)
    ("keywords:existence", {"keywords": ["cat", "dog"]}, "A cat and a dog.", "A cat alone."),
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "All good.", "That is bad."),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": "at least"}, "tea, tea", "tea"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"}, "zoo", "zzz"),
    ("language:response_language", {"language": "de"},
     "Das ist ein kurzer Satz auf Deutsch, und er ist ganz klar geschrieben.",
     "This is a short sentence in English, and it is written very plainly."),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at most"}, "one two three", "one two three four"),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "at least"}, "One. Two.", "Only one."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First.\n***\nSecond.", "First.\n* * *\nSecond."),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First part.\n\nThen second.", "First part.\n\nAnd second."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\nP.S. more", "Body only."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[name] at [address]", "[name] only"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b", "* a"),
    ("detectable_format:title", {}, "<<My Title>>\ntext", "No title"),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Sure thing"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", "*one* only"),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\na\nSECTION 2\nb", "SECTION 1\na"),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', "{a: 1"),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi"}, "Say hi. Hi!", "Hi!"),
    ("combination:two_responses", {}, "One answer.\n******\nAnother answer.", "Same\n******\nSame"),
    ("change_case:english_capital", {}, "ALL CAPS HERE", "Not All Caps"),
    ("change_case:english_lowercase", {}, "all lower here", "Not lower"),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "NASA and ESA", "Only NASA"),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Done. Any other questions?", "Done."),
    ("startend:quotation", {}, '"wrapped"', "not wrapped"),
    ("punctuation:no_comma", {}, "no commas here", "a, b"),
]


def test_every_constraint_type_is_covered():
    assert {case[0] for case in IFEVAL_CASES} == set(ifeval.CHECKS) and len(ifeval.CHECKS) >= 20


@pytest.mark.parametrize("kind,arguments,good,bad", IFEVAL_CASES, ids=[c[0] for c in IFEVAL_CASES])
def test_ifeval_constraint(kind, arguments, good, bad):
    constraint = {"type": kind, **arguments}
    assert REWARDS["ifeval"]([good, bad], constraints=[[constraint]] * 2) == [1.0, 0.0]


def test_ifeval_record_shapes_and_prompt_level():
    response = "<think>private</think>all lowercase, with a comma"
    ifeval_style = {"instruction_id_list": [["change_case:english_lowercase", "punctuation:no_comma"]],
                    "kwargs": [[{}, {}]]}
    assert REWARDS["ifeval"]([response], **ifeval_style) == [0.5]
    assert REWARDS["ifeval"]([response], **ifeval_style, prompt_level=True) == [0.0]
    tulu = '{"func_name": "validate_word_constraint", "N": 3, "quantifier": "at least"}'
    assert REWARDS["ifeval"](["one two three"], ground_truth=[tulu]) == [1.0]
    assert REWARDS["ifeval"](["one two"], ground_truth=[tulu]) == [0.0]


def test_tulu_names_map_onto_known_checks():
    assert all(kind in ifeval.CHECKS for kind, _ in ifeval.TULU_FUNCTIONS.values())


# ----------------------------------------------------------------------------- registry and policy

def _raises_on_b(completions, **columns):
    if any(c == "b" for c in completions):
        raise ZeroDivisionError("boom")
    return [1.0] * len(completions)


def test_a_reward_that_raises_names_itself_and_the_sample():
    reward = build_reward(f"{__name__}:_raises_on_b")
    with pytest.raises(RewardError, match=r"reward '.*_raises_on_b' raised on sample 1: ZeroDivisionError: boom"):
        reward(["a", "b", "c"], ground_truth=["1", "2", "3"])


def test_on_error_zero_scores_zero_and_counts():
    reward = build_reward(f"{__name__}:_raises_on_b", on_error="zero")
    assert reward(["a", "b", "b"], ground_truth=["1", "2", "3"]) == [1.0, 0.0, 0.0]
    assert reward.errors == 2


def test_wrong_number_of_scores_is_an_error():
    reward = build_reward(f"{__name__}:_one_score")
    with pytest.raises(RewardError, match="returned 1 scores for 2 completions"):
        reward(["a", "b"])


def _one_score(completions, **columns):
    return [1.0]


def test_unknown_reward_and_option():
    with pytest.raises(LookupError, match="unknown reward 'nope'"):
        resolve_reward("nope")
    with pytest.raises(LookupError, match="has no option 'timeot'"):
        build_reward("math", {"timeot": 1})


def test_rewards_import_no_torch():
    import subprocess
    import sys

    code = "import sys, posttrain.rewards; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def _math_in_worker(_):
    return math_reward([r"\boxed{1/2}"], ["0.5"], timeout=5)


def test_math_reward_works_inside_a_daemonic_pool_worker():
    # multiprocessing.Pool workers are daemonic and may not start multiprocessing children.
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.map(_math_in_worker, [0]) == [[1.0]]
