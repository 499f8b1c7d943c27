"""On-policy pairing: correct answers paired with incorrect ones, per prompt, deterministically."""

from posttrain.data.onpolicy import pair_answers

RECORDS = [{"prompt": "1 + 1?", "ground_truth": "2"}, {"prompt": [{"role": "user", "content": "2 + 2?"}]},
           {"prompt": "3 + 3?"}, {"prompt": "4 + 4?"}]
ANSWERS = [["Answer: 2", "Answer: 3", "Answer: 2 ", "Answer: 5", "Answer: 2"],   # 1 distinct good, 2 bad
           ["Answer: 4", "4 it is", "Answer: 1", "Answer: 0", "Answer: 9"],     # 2 good, 3 bad
           ["Answer: 6", "Answer: 6", "6", "Answer: 6", "Answer: 6"],           # all correct
           ["", "Answer: 1", "Answer: 2", "Answer: 3", "Answer: 9"]]            # none correct
SCORES = [[1, 0, 1, 0, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]   # "" scored 1 is not an answer


def test_pairs_put_a_correct_answer_against_an_incorrect_one():
    pairs, stats = pair_answers(RECORDS, ANSWERS, SCORES, pairs=5, threshold=1.0, seed=0)
    assert dict(stats) == {"prompts": 4, "prompts with pairs": 2, "all answers correct": 1,
                           "no correct answer": 1, "pairs": 2 + 5}
    first = [p for p in pairs if p["prompt"][0]["content"] == "1 + 1?"]
    assert len(first) == 2  # one distinct correct answer ("Answer: 2 " is the same answer) x 2 wrong ones
    assert {p["chosen"][0]["content"].strip() for p in first} == {"Answer: 2"}
    assert {p["rejected"][0]["content"] for p in first} == {"Answer: 3", "Answer: 5"}
    for p in pairs:
        assert p["chosen"][0]["role"] == "assistant" and p["chosen"] != p["rejected"]
        good = dict(zip(ANSWERS[0] + ANSWERS[1], SCORES[0] + SCORES[1]))
        assert good[p["chosen"][0]["content"]] == 1 and good[p["rejected"][0]["content"]] == 0
    second = [p for p in pairs if p["prompt"][0]["content"] == "2 + 2?"]
    assert len({p["chosen"][0]["content"] for p in second}) == 2  # both correct answers are used
    assert len({p["rejected"][0]["content"] for p in second}) == 3  # and every wrong one


def test_pairing_is_capped_and_deterministic_by_seed():
    a, _ = pair_answers(RECORDS, ANSWERS, SCORES, pairs=1, threshold=1.0, seed=3)
    b, _ = pair_answers(RECORDS, ANSWERS, SCORES, pairs=1, threshold=1.0, seed=3)
    assert a == b and len(a) == 2
    others = {str(pair_answers(RECORDS, ANSWERS, SCORES, pairs=1, threshold=1.0, seed=s)[0]) for s in range(8)}
    assert len(others) > 1  # the seed chooses which pair
