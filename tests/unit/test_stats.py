"""evaluation/stats.py: the paired difference and its interval, against figures computed by hand
and against scipy's paired t-interval where the two agree (one seed, many problems)."""

import math

import pytest

from posttrain.evaluation.stats import describe_difference, paired_difference, problem_scores


def test_one_seed_is_the_normal_interval_of_paired_differences():
    a = [[1, 1, 0, 1, 0, 1, 1, 0]]
    b = [[1, 0, 0, 0, 0, 1, 0, 0]]
    d = [x - y for x, y in zip(a[0], b[0])]  # 0 1 0 1 0 0 1 0: mean 3/8
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1))
    result = paired_difference(a, b)
    assert result["difference"] == pytest.approx(0.375)
    assert result["high"] - result["difference"] == pytest.approx(1.959964 * sd / math.sqrt(8), rel=1e-6)
    assert result["seeds"] == 1 and result["std_over_seeds"] == 0.0


def test_it_agrees_with_scipy_for_many_problems():
    scipy_stats = pytest.importorskip("scipy.stats")
    import random

    rng = random.Random(0)
    a = [[float(rng.random() < 0.6) for _ in range(2000)]]
    b = [[float(rng.random() < 0.5) for _ in range(2000)]]
    d = [x - y for x, y in zip(a[0], b[0])]
    low, high = scipy_stats.t.interval(0.95, len(d) - 1, loc=sum(d) / len(d), scale=scipy_stats.sem(d))
    result = paired_difference(a, b)
    assert result["low"] == pytest.approx(low, abs=2e-4) and result["high"] == pytest.approx(high, abs=2e-4)


def test_seed_noise_widens_the_interval():
    """Two seeds that disagree: the same mean, a wider interval than the problems alone give."""
    a = [[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]]
    b = [[0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]]
    result = paired_difference(a, b)
    assert result["per_seed"] == [0.5, 0.0] and result["difference"] == 0.25
    per_problem = [0.5] * 4 + [0.0] * 4
    var_problems = sum((x - 0.25) ** 2 for x in per_problem) / 7
    var_seeds = ((0.5 - 0.25) ** 2 + (0.0 - 0.25) ** 2) / 1
    assert result["high"] - 0.25 == pytest.approx(1.959964 * math.sqrt(var_problems / 8 + var_seeds / 2), rel=1e-6)
    assert result["excludes_zero"] is False
    assert describe_difference(result).startswith("+25.0 points [")


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([[1, 0]], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="same held-out problems"):
        paired_difference([[1, 0]], [[1]])


def test_problem_scores_read_an_evaluation_samples_file(tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"scores": [1.0]}\n{"scores": [0.0]}\n{"scores": [1.0, 0.0, 0.5, 1.0]}\n')
    assert problem_scores(samples) == [1.0, 0.0, 0.5]
