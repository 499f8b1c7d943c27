"""posttrain's `gsm8k` verifier (numeric with `strict: true`) against verl's own rule.

The scores in VERL were produced by running verl's `verl/utils/reward_score/gsm8k.py`
(`compute_score(solution_str, ground_truth)`, method "strict", at volcengine/verl
b178a3cd56f58b2d502255daba591e92833930a7) on each case; verl itself is not a dependency. The
cases probe its regex (`#### (\\-?[0-9\\.\\,]+)`), its 300-character tail and its last-match
rule. posttrain agrees on every case but the four in NUMERALS, where it compares numerals and
verl compares strings (docs/rewards.md says so)."""

import pytest

from posttrain.rewards import REWARDS

TAIL = "y" * 294  # "#### 7" + TAIL is exactly verl's 300 characters
VERL = [  # (completion, ground truth, verl's score)
    ("Natalia sold 48 clips in April and 24 in May. 48+24 = 72\n#### 72", "72", 1.0),
    ("#### 72", "72", 1.0),
    ("#### 71", "72", 0.0),
    ("The answer is 72", "72", 0.0),
    ("Answer: 72", "72", 0.0),
    ("####72", "72", 0.0),
    ("####  9", "9", 0.0),
    ("#### 1,000", "1000", 1.0),
    ("#### -5", "-5", 1.0),
    ("#### - 5", "-5", 0.0),
    ("#### $5", "5", 0.0),
    ("#### 5 dollars", "5", 1.0),
    ("so 12 eggs. #### 12 eggs", "12", 1.0),
    ("#### 5\n#### 6", "6", 1.0),
    ("#### 5\n#### 6", "5", 0.0),
    ("#### 72" + "x" * 400, "72", 0.0),
    ("x" * 400 + "#### 72", "72", 1.0),
    ("#### 7" + TAIL, "7", 1.0),
    ("#### 7" + TAIL + "y", "7", 0.0),
    ("#### 0.5", "0.5", 1.0),
    ("#### .5", "0.5", 0.0),
    ("#### 12,", "12", 1.0),
    ("#### 1,2", "12", 1.0),
    ("##### 9", "9", 1.0),
    ("<answer>#### 9</answer>", "9", 1.0),
    ("", "7", 0.0),
    ("#### ", "7", 0.0),
]
NUMERALS = [  # verl 0 (string comparison), posttrain 1 (the same number)
    ("#### 18.0", "18"),
    ("#### 72.", "72"),
    ("#### 3.50", "3.5"),
    ("#### 007", "7"),
]


@pytest.mark.parametrize("completion, truth, score", VERL, ids=range(len(VERL)))
def test_the_gsm8k_verifier_scores_as_verl_does(completion, truth, score):
    assert REWARDS["gsm8k"]([completion], [truth]) == [score]
    assert REWARDS["numeric"]([completion], [truth], strict=True) == [score]


@pytest.mark.parametrize("completion, truth", NUMERALS)
def test_where_verl_compares_strings_posttrain_compares_numerals(completion, truth):
    assert REWARDS["gsm8k"]([completion], [truth]) == [1.0]
