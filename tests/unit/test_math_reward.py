"""The math reward against the answer forms math-verify documents (tests/unit/math_pairs.py),
and the cases issue 17 found it wrong on, each failing before and passing now."""

import logging

import pytest

from posttrain.rewards import REWARDS
from posttrain.rewards.math_answer import COUNTS, _pool, judge, math_reward

from .math_pairs import equivalent_pairs, near_miss_pairs


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def test_equivalent_answers_in_every_documented_form_score_one():
    pairs = equivalent_pairs()
    assert len(pairs) >= 300
    scores = math_reward([c for _, c in pairs], [g for g, _ in pairs])
    misses = [pair for pair, score in zip(pairs, scores) if score != 1.0]
    assert len(misses) / len(pairs) < 0.02, misses


def test_no_near_miss_scores():
    pairs = near_miss_pairs()
    scores = math_reward([c for _, c in pairs], [g for g, _ in pairs])
    assert [pair for pair, score in zip(pairs, scores) if score] == []


def test_the_fast_paths_agree_with_math_verify():
    # The pairs the reward settles without sympy (plain numbers, the same spelling), judged by
    # math-verify itself in this process.
    pairs = [(g, c) for g, c in equivalent_pairs() + near_miss_pairs() if len(c) < 40][:150]
    fast = math_reward([c for _, c in pairs], [g for g, _ in pairs])
    slow = [float(judge(g, c)) for g, c in pairs]
    assert [p for p, f, s in zip(pairs, fast, slow) if f != s] == []


CLASSES = [  # (completion, gold, expected): each scored wrong before issue 17
    ("-5", "-5", 1.0),                                     # no marker: math-verify reads the bare answer
    (r"$\frac13$", r"\frac{1}{3}", 1.0),
    ("1,000.99€", "1000.99", 1.0),
    (r"The solutions are \boxed{1} and \boxed{2}.", r"\{1, 2\}", 1.0),  # every box together
    (r"\boxed{2}, \boxed{1}", "1, 2", 1.0),
    (r"\boxed{3}. Wait, I made an error: the final answer is 4.", "4", 1.0),  # the last marker wins
    ("The final answer is 4. I hope it is correct.", "4", 1.0),  # not the rest of the line
    (r"The final answer is \$12.", "12", 1.0),             # an escaped dollar is currency
    ('The answer is "7".', "7", 1.0),                      # quotes around an answer
    (r"Answer: $\frac{\sqrt{2}}{2}$", r"\frac{1}{\sqrt{2}}", 1.0),
    ("#### 2\\sqrt{2}", "\\sqrt{8}", 1.0),                  # bare LaTeX after a marker
]


@pytest.mark.parametrize("completion,gold,expected", CLASSES)
def test_each_class_that_was_wrong_before(completion, gold, expected):
    assert math_reward([completion], [gold]) == [expected]


def test_a_gold_answer_that_does_not_parse_scores_none_and_is_counted():
    before = COUNTS["gold_unparsed"]
    scores = math_reward([r"\boxed{1}", r"\boxed{1}", r"\boxed{1}"], [r"\undefined{{", "", None])
    assert scores == [None, None, None]  # never 1.0 (open-r1 once paid 1.0 for these)
    assert COUNTS["gold_unparsed"] == before + 3
    # TRL leaves None out of the weighted sum; through `verifier` it stays None too.
    assert REWARDS["verifier"]([r"\boxed{1}"], verifier=["math"], ground_truth=[r"\undefined{{"]) == [None]


def test_a_reward_past_its_bound_scores_zero_and_is_counted():
    before = COUNTS["timeout"]
    tower = r"\boxed{" + "9^{" * 20_000 + "9" + "}" * 20_001
    assert math_reward([tower, r"\boxed{2}"], ["1", "2"], timeout=0.5) == [0.0, 1.0]
    assert COUNTS["timeout"] == before + 1


def test_math_uses_several_processes_in_one_call():
    scores = math_reward([rf"\boxed{{{i}x}}" for i in range(40)], [f"{i}*x" for i in range(40)], processes=2)
    assert scores == [1.0] * 40
    assert len({w.process.pid for w in _pool(2.0, 2)._idle}) == 2  # both workers took a share
