"""The `constraints` task (Tulu 3's RLVR instruction-following prompts, generated): every
constraint's arguments are the ones the ifeval verifier reads, so an answer that follows it scores
1 and one that breaks it scores 0; the prompts are distinct, seeded and split-disjoint; none is
contaminated by IFEval; the shipped in-family IFEval subset is exactly what `in_family` keeps."""

import json
from pathlib import Path

import pytest

from posttrain.data.decontaminate import EvalIndex, contaminated, record_text
from posttrain.rewards.ifeval import ifeval_reward
from posttrain.tasks import TASKS
from posttrain.tasks.constraints import CONSTRAINTS, FAMILY, _compatible, constraints, in_family

ROOT = Path(__file__).resolve().parents[2]
IFEVAL = ROOT / "recipes" / "smollm2" / "data" / "ifeval.jsonl"
IN_FAMILY = ROOT / "recipes" / "smollm2" / "data" / "ifeval-in-family.jsonl"

REQUEST = "Describe a garden in spring."


def follows(instruction: str, kwargs: dict) -> str:
    """An answer, written by hand per constraint, that follows it."""
    plain = "the garden wakes up slowly and the air smells of rain and soil"
    return {
        "change_case:english_lowercase": plain,
        "change_case:english_capital": "THE GARDEN IS FULL OF FLOWERS AND THE BIRDS ARE SINGING IN THE TREES.",
        "punctuation:no_comma": plain,
        "startend:end_checker": f"{plain}. {kwargs.get('end_phrase')}",
        "startend:quotation": f'"{plain}"',
        "detectable_format:title": f"<<spring>>\n{plain}",
        "keywords:existence": f"{plain} {' '.join(kwargs.get('keywords', []))}",
        "keywords:forbidden_words": plain,
        "detectable_content:postscript": f"{plain}\n\n{kwargs.get('postscript_marker')} come and see it",
        "detectable_format:number_bullet_lists": "\n".join(["* a point"] * kwargs.get("num_bullets", 0)),
        "detectable_format:json_format": json.dumps({"answer": plain}),
        "combination:repeat_prompt": f"{kwargs.get('prompt_to_repeat')} {plain}",
        "detectable_format:number_highlighted_sections": " ".join(["*a highlight*"] * kwargs.get("num_highlights", 0)),
        "keywords:frequency": " ".join([kwargs.get("keyword", "")] * kwargs.get("frequency", 0)),
        "keywords:letter_frequency": kwargs.get("letter", "") * kwargs.get("let_frequency", 0),
        "change_case:capital_word_frequency": " ".join(["BIG"] * kwargs.get("capital_frequency", 0)) + " and small",
        "detectable_content:number_placeholders": " ".join(["[name]"] * kwargs.get("num_placeholders", 0)),
        "length_constraints:number_sentences": "One sentence.",
        "length_constraints:number_words": "a few words only",
    }[instruction]


def breaks(instruction: str, kwargs: dict) -> str:
    """An answer that breaks it."""
    long = " ".join(["Light, quiet, warm and bright words fill A garden."] * 30)
    return {
        "keywords:existence": "no such words here",
        "keywords:forbidden_words": " ".join(kwargs.get("forbidden_words", [])),
        "keywords:frequency": "none",
        "keywords:letter_frequency": "xyz",
        "change_case:capital_word_frequency": "all small words",
        "detectable_content:number_placeholders": "no brackets",
        "detectable_format:number_bullet_lists": "* one\n* two\n* three\n* four\n* five",
        "detectable_format:number_highlighted_sections": "plain",
        "combination:repeat_prompt": "an answer that does not repeat the request",
    }.get(instruction, long)


@pytest.mark.parametrize("instruction", sorted(CONSTRAINTS))
def test_every_constraint_is_read_by_the_ifeval_verifier_as_it_was_written(instruction):
    import random

    rng = random.Random(0)
    for _ in range(5):  # several draws of its arguments
        text, kwargs = CONSTRAINTS[instruction](rng, REQUEST)
        assert text and instruction in FAMILY
        ok = ifeval_reward([follows(instruction, kwargs)], instruction_id_list=[[instruction]], kwargs=[[kwargs]])
        bad = ifeval_reward([breaks(instruction, kwargs)], instruction_id_list=[[instruction]], kwargs=[[kwargs]])
        assert (ok, bad) == ([1.0], [0.0]), (instruction, kwargs)


def test_prompts_are_distinct_seeded_split_disjoint_and_pair_only_compatible_constraints():
    train = TASKS["constraints"](n=300, split="train", seed=0)
    assert train == constraints(n=300, split="train", seed=0)
    assert train != constraints(n=300, split="train", seed=1)
    heldout = constraints(n=50, split="heldout", seed=0)
    texts = [r["prompt"][0]["content"] for r in train]
    assert len(set(texts)) == 300 and not set(texts) & {r["prompt"][0]["content"] for r in heldout}
    two = [r for r in train if len(r["instruction_id_list"]) == 2]
    assert 40 < len(two) < 150  # about 30 % of them
    assert all(_compatible(*r["instruction_id_list"]) for r in two)
    assert all(r["verifier"] == "ifeval" and json.loads(r["ground_truth"]) == r["instruction_id_list"] for r in train)
    only = constraints(n=20, seed=0, only=["punctuation:no_comma"], max_constraints=1)
    assert all(r["instruction_id_list"] == ["punctuation:no_comma"] for r in only)
    with pytest.raises(ValueError, match="unknown constraints"):
        constraints(n=1, only=["no:such"])


def test_generated_prompts_share_no_8_gram_run_with_ifeval():
    ifeval = [json.loads(line) for line in IFEVAL.open()]
    index = EvalIndex.build([record_text(r) for r in ifeval])
    generated = constraints(n=1000, seed=0)
    assert max(index.overlap(record_text(r))[0] for r in generated) == 0.0  # not one shared 8-word run
    assert contaminated(generated, index) == []
    assert contaminated(ifeval[:5], index) == [0, 1, 2, 3, 4]  # the check itself finds a copy


def test_the_shipped_in_family_subset_is_ifevals_rows_that_ask_only_for_the_tasks_constraints():
    ifeval = [json.loads(line) for line in IFEVAL.open()]
    shipped = [json.loads(line) for line in IN_FAMILY.open()]
    assert shipped == [r for r in ifeval if in_family(r)]
    assert len(shipped) == 372
    assert not in_family({"instruction_id_list": ["length_constraints:number_words"],
                          "kwargs": [{"relation": "at least", "num_words": 300}]})
    assert not in_family({"instruction_id_list": ["language:response_language"], "kwargs": [{"language": "fr"}]})
