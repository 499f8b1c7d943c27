"""IFEval: posttrain's verdicts against the reference implementation's (lm-evaluation-harness's
copy of Google's code, installed from PyPI as a dev dependency), strict and loose, on the case
set in ifeval_cases.py; and a table of the cases that disagreed before (issue 17)."""

import logging

import pytest

from .ifeval_cases import INSTRUCTIONS, RESPONSES, cases
from .ifeval_reference import reference_verdict

from posttrain.rewards import REWARDS
from posttrain.rewards.ifeval import CHECKS, verdicts

# Where posttrain deliberately differs from the reference, with the reason (docs/rewards.md).
DELIBERATE: dict = {}


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.ERROR)  # the reference logs every text langdetect cannot place
    yield
    logging.disable(logging.NOTSET)


def test_the_case_set_covers_every_instruction_type_with_hundreds_of_cases():
    assert set(INSTRUCTIONS) == set(CHECKS) and len(CHECKS) == 25
    assert len(cases()) >= 500 and len(RESPONSES) >= 30


@pytest.mark.parametrize("loose", [False, True], ids=["strict", "loose"])
def test_verdicts_agree_with_the_reference_implementation(loose):
    disagree, followed = [], 0
    for instruction, kwargs, response in cases():
        expected = reference_verdict(instruction, kwargs, response, loose)
        followed += expected
        got = verdicts(response, [{"type": instruction, **kwargs}], loose)[0]
        if got != expected and (instruction, response) not in DELIBERATE:
            disagree.append((instruction, kwargs, response[:60], expected, got))
    assert followed > len(cases()) // 5  # the set is not all failures
    assert disagree == []


# Each row failed before (issue 17's list of disagreement classes); the expected verdict is
# the reference's, and the test checks both posttrain and the reference say it.
CLASSES = [
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One.\n***\nTwo.", True),  # unspaced ***
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "One.\n* * *\nTwo.", False),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "at least"}, "cats and a cat", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "- one\n-two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "* one\n** bold line", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "I saw A plane over the U.S. today", True),
    ("punctuation:no_comma", {}, "", False),  # an empty response passes no negative constraint
    ("keywords:forbidden_words", {"forbidden_words": ["bad"]}, "  ", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "", False),
    ("change_case:english_capital", {}, "DAS IST EIN LANGER SATZ AUF DEUTSCH UND ER IST SEHR KLAR", False),
    ("change_case:english_lowercase", {}, "das ist ein langer satz auf deutsch und er ist sehr klar", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "only **bold** here", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "only **bold** here", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye. P. S. one more thing", True),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Bye.\n  p.s. one more thing", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"},
     "Dr. Smith met Mr. Jones at 5 p.m. yesterday.", True),
    ("detectable_format:constrained_response", {}, "my answer is yes.", False),  # case-sensitive
    ("combination:two_responses", {}, "******\nFirst one.\n******\nSecond one.\n******", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"Done. Any other questions?"', True),
    ("length_constraints:number_words", {"num_words": 4, "relation": "at least"}, "don't we're ok", True),
    ("detectable_format:title", {}, "<< >>\nbody", False),
    ("detectable_format:json_format", {}, '```Json\n{"a": 1}\n```', True),
    ("keywords:existence", {"keywords": ["(beta)"]}, "the beta release", True),  # keywords are regexes
    ("keywords:existence", {"keywords": ["c++"]}, "written in c++", True),  # not a valid regex: literal
]


@pytest.mark.parametrize("instruction,kwargs,response,expected", CLASSES,
                         ids=[f"{c[0].split(':')[1]}-{i}" for i, c in enumerate(CLASSES)])
def test_each_class_that_disagreed_before(instruction, kwargs, response, expected):
    if kwargs.get("keywords") != ["c++"]:  # the reference raises on an invalid regex
        assert reference_verdict(instruction, kwargs, response) == expected
    assert verdicts(response, [{"type": instruction, **kwargs}])[0] == expected


def test_loose_mode_and_prompt_level_through_the_reward():
    response = "Sure, here it is:\n*ALL CAPS HERE AS ASKED IN THE PROMPT WITH SEVERAL WORDS*"
    record = {"instruction_id_list": [["change_case:english_capital", "punctuation:no_comma"]], "kwargs": [[{}, {}]]}
    assert REWARDS["ifeval"]([response], **record) == [0.0]  # strict: the first line breaks both
    assert REWARDS["ifeval"]([response], **record, loose=True) == [1.0]  # loose drops the first line
    assert REWARDS["ifeval"]([response], **record, prompt_level=True) == [0.0]


def test_a_malformed_record_is_named():
    with pytest.raises(ValueError, match="record 1 is malformed.*num_words"):
        REWARDS["ifeval"](["a", "b"], constraints=[[{"type": "punctuation:no_comma"}],
                                                    [{"type": "length_constraints:number_words", "num_word": 3}]])
    with pytest.raises(ValueError, match="record 0 is malformed.*relation"):
        REWARDS["ifeval"](["a"], constraints=[[{"type": "length_constraints:number_words", "num_words": 3,
                                                "relation": "roughly"}]])
