"""Test-time compute strategies (issue 14, point 5) against brute force on small hand-built trees:
a policy whose next steps are a fixed tree (its i-th sample of a node's next step is the node's
i-th child, cycling), and a PRM that is a table of scores per partial solution. The brute-force
answers enumerate the tree directly; the token counts are summed by hand."""

import itertools
import json

import pytest

from posttrain.evaluation.test_time import (difficulty_bins, next_step, plot, report_markdown, sampling_outcomes,
                                            search, summarise, wilson)

# A depth-3 tree, branching 2: node names are the steps; leaves declare answers.
TREE = {
    (): ["a1", "a2"],
    ("a1",): ["b1", "b2"], ("a2",): ["b3", "b4"],
    ("a1", "b1"): ["Answer: 1", "Answer: 2"], ("a1", "b2"): ["Answer: 3", "Answer: 4"],
    ("a2", "b3"): ["Answer: 5", "Answer: 6"], ("a2", "b4"): ["Answer: 7", "Answer: 8"],
}
# The PRM's score of a partial solution (the aggregate over its steps, here given directly).
SCORES = {
    ("a1",): 0.9, ("a2",): 0.6,
    ("a1", "b1"): 0.2, ("a1", "b2"): 0.5, ("a2", "b3"): 0.95, ("a2", "b4"): 0.1,
    ("a1", "b1", "Answer: 1"): 0.3, ("a1", "b1", "Answer: 2"): 0.1, ("a1", "b2", "Answer: 3"): 0.6,
    ("a1", "b2", "Answer: 4"): 0.55, ("a2", "b3", "Answer: 5"): 0.7, ("a2", "b3", "Answer: 6"): 0.99,
    ("a2", "b4", "Answer: 7"): 0.8, ("a2", "b4", "Answer: 8"): 0.2,
}
LEAVES = [path for path in SCORES if len(path) == 3]


class TreePolicy:
    """The i-th sample of a node's next step is its i-th child (cycling); greedy is the first."""

    def __init__(self):
        self.generated = []  # every step handed out, for the token count

    def steps(self, prompts, prefixes, n, greedy=False):
        out = []
        for prefix in prefixes:
            children = TREE.get(tuple(prefix), [])
            picked = [children[0]] if greedy and children else [children[i % len(children)] for i in range(n)] if children else [""] * n
            self.generated += [c for c in picked if c]
            out.append(picked)
        return out

    def sample(self, prompts, n):
        raise AssertionError("search does not sample whole answers")

    def tokens(self, text):
        return len(text.split())


def scorer(prompts, steps_lists):
    return [SCORES[tuple(steps)] for steps in steps_lists]


def _search(strategy, budget, width, lookahead=0):
    policy = TreePolicy()
    (result,) = search(["q"], policy, scorer, budget=budget, beam_width=width, strategy=strategy, max_steps=5,
                       lookahead=lookahead)
    return result, policy


def test_beam_search_with_room_for_every_path_finds_the_best_leaf_of_the_whole_tree():
    result, _ = _search("beam_search", budget=8, width=2)
    best = max(LEAVES, key=lambda p: SCORES[p])  # brute force: every root-to-leaf path
    assert result.answer == "\n".join(best)
    assert result.finished == len(LEAVES)


def test_beam_search_keeping_one_beam_is_greedy_by_the_prm():
    result, _ = _search("beam_search", budget=2, width=2)
    path = ()  # brute force: at each level the child the PRM scores highest
    while path in TREE:
        path = max((path + (c,) for c in TREE[path]), key=lambda p: SCORES[p])
    assert result.answer == "\n".join(path)  # a1 (0.9) -> b2 (0.5) -> Answer: 3 (0.6)
    assert path == ("a1", "b2", "Answer: 3")


def test_beam_search_keeps_the_top_n_over_m_of_each_level():
    result, policy = _search("beam_search", budget=4, width=2)
    # Level 1: a1, a2 (N=4 samples cycle over 2 children: a1 a2 a1 a2); both of the top 2 are kept.
    # Level 2: each kept beam sampled twice: a1b1 a1b2 a2b3 a2b4 (and a1's duplicate a1 beam's). The brute-force
    # top 2 of the 4 distinct level-2 nodes by score is a2b3 (0.95), a1b2 (0.5): their 4 leaves compete.
    level1 = sorted({("a1",), ("a2",)}, key=lambda p: -SCORES[p])[:2]
    level2 = sorted([p + (c,) for p in level1 for c in TREE[p]], key=lambda p: -SCORES[p])[:2]
    leaves = [p + (c,) for p in level2 for c in TREE[p]]
    assert result.answer == "\n".join(max(leaves, key=lambda p: SCORES[p]))
    # Tokens: every step handed out, counted once per sample (4 first steps, then 2 per kept beam per level).
    assert result.tokens == sum(len(s.split()) for s in policy.generated)


def test_dvts_searches_each_subtree_greedily():
    result, _ = _search("dvts", budget=4, width=2)
    # N/M = 2 subtrees: the first M=2 first-level samples (a1, a2) form subtree 0, the next two subtree 1;
    # each keeps its best step per level and expands it M times. Brute force: greedy from each subtree's best.
    finals = []
    for first in ([("a1",), ("a2",)], [("a1",), ("a2",)]):
        path = max(first, key=lambda p: SCORES[p])
        while path in TREE:
            path = max((path + (c,) for c in TREE[path]), key=lambda p: SCORES[p])
        finals.append(path)
    assert result.answer == "\n".join(max(finals, key=lambda p: SCORES[p]))


def test_lookahead_scores_a_candidate_by_its_greedy_rollout():
    result, policy = _search("lookahead", budget=2, width=2, lookahead=2)
    # Brute force: at level 1, each candidate is scored at the end of its greedy rollout (first child twice);
    # the kept one is continued, and again scored by rollouts.
    def rollout(path, k):
        for _ in range(k):
            if path not in TREE:
                break
            path = path + (TREE[path][0],)
        return SCORES[path]

    path = ()
    while path in TREE:
        path = max((path + (c,) for c in TREE[path]), key=lambda p: rollout(p, 2))
    # a1 rolls out to a1 b1 Answer: 1 (0.3); a2 to a2 b3 Answer: 5 (0.7): lookahead picks a2, plain greedy a1.
    assert path[0] == "a2"
    assert result.answer == "\n".join(path)
    assert result.tokens == sum(len(s.split()) for s in policy.generated)  # rollout steps count too
    plain, plain_policy = _search("beam_search", budget=2, width=2)
    assert result.tokens > plain.tokens


def test_a_budget_below_the_beam_width_keeps_one_beam_of_n():
    small, _ = _search("beam_search", budget=1, width=4)
    assert small.answer == "a1\nb1\nAnswer: 1"  # one sample per level: the first child each time


def test_sampling_strategies_match_brute_force_on_every_budget():
    correct = [False, True, False, True, False, False]
    keys = ["3", "5", "3", "5", "3", "7"]
    selector = [0.1, 0.2, 0.9, 0.3, 0.2, 0.95]
    tokens = [4, 5, 6, 7, 8, 9]
    for budget in range(1, 7):
        out = sampling_outcomes(correct, keys, selector, tokens, budget, ["majority", "best_of_n", "weighted_majority"])
        c, k, s = correct[:budget], keys[:budget], selector[:budget]
        votes = {key: sum(1 for x in k if x == key) for key in k}
        top = max(votes.values())
        winner = next(x for x in k if votes[x] == top)  # ties: the earliest
        weights = {key: sum(w for x, w in zip(k, s) if x == key) for key in k}
        heavy = max(weights, key=lambda key: (weights[key], -k.index(key)))
        assert out["majority"] == (c[k.index(winner)], sum(tokens[:budget]))
        assert out["best_of_n"][0] == c[max(range(budget), key=lambda i: (s[i], -i))]
        assert out["weighted_majority"][0] == c[k.index(heavy)]
        assert out["oracle"] == (any(c), sum(tokens[:budget]))


def test_difficulty_bins_cut_by_pass_rate_easiest_first():
    rates = [0.0, 1.0, 0.5, 0.25, 0.75, 0.1, 0.9, 0.6, 0.3, 0.2]
    levels = difficulty_bins(rates, 5)
    assert sorted(levels) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    for a, b in itertools.combinations(range(10), 2):
        if rates[a] > rates[b]:
            assert levels[a] <= levels[b]


def test_wilson_interval_matches_the_formula_at_the_edges():
    assert wilson(0, 10)[0] == 0.0 and 0.27 < wilson(0, 10)[1] < 0.28  # 0.2775
    low, high = wilson(10, 10)
    assert high == 1.0 and 0.72 < low < 0.73


def test_report_best_strategy_per_bin_and_the_files(tmp_path):
    outcomes = {"majority": {1: [(True, 3), (False, 3)], 4: [(True, 12), (True, 12)]},
                "beam_search": {1: [(True, 4), (True, 4)], 4: [(True, 20), (False, 20)]},
                "oracle": {1: [(True, 3), (True, 3)], 4: [(True, 12), (True, 12)]}}
    summary = summarise(outcomes, [1, 2], [1, 4], bins=2)
    assert summary["curves"]["majority"][1]["accuracy"] == 1.0
    assert summary["curves"]["beam_search"][0]["tokens_per_question"] == 4
    level2 = summary["bins"][1]["by_budget"]
    assert [cell["best"] for cell in level2] == ["beam_search", "majority"]  # the oracle is never chosen
    report = {"questions": 2, "budgets": [1, 4], "policy": "p", "prm": "r", "verifier": "v", "temperature": 0.8,
              "beam_width": 4, "lookahead": 1, "seconds": 1.0, "hardware": "cpu", **summary}
    text = report_markdown(report)
    assert "| oracle pass@N (ceiling) |" in text and "| 2 | 1 | beam_search (100%) | majority (100%) |" in text
    plot(report, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(report)


@pytest.mark.parametrize("generated, step", [("12 + 3 = 15\nAnswer: 15\n", "12 + 3 = 15\nAnswer: 15"),
                                              ("12 + 3 = 15\n15 + 1 = 16", "12 + 3 = 15"),
                                              ("Answer: 15\nmore", "Answer: 15"), ("\nstray", "")])
def test_a_step_is_its_first_line_and_an_answer_line_that_follows(generated, step):
    assert next_step(generated) == step
