"""The `constraints` task: ordinary prompts with IFEval-style verifiable instructions appended,
as Tulu 3 built its RLVR instruction-following data (arXiv 2411.15124, section 6: a prompt, plus
one or more constraints from IFEval's taxonomy, each checked by a function).

A record carries IFEval's own columns, so the `ifeval` reward and IFEval's figures read it as
they read IFEval's rows:

    {"prompt": [{"role": "user", "content": "Describe a rainy afternoon in a small town. Do not use
     any commas in your reply."}],
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}],
     "ground_truth": "[\\"punctuation:no_comma\\"]", "verifier": "ifeval"}

The requests and the wording of every instruction are posttrain's own, not IFEval's (a recipe
that evaluates on IFEval also decontaminates against it: data.decontaminate). The constraints are
the ones a short answer can meet (no "at least 300 words"); `FAMILY` lists them, and
`in_family` says whether an IFEval row asks only for them. Pure Python, no torch.
"""

from __future__ import annotations

import json
import random

from posttrain.tasks.common import distinct

TOPICS = (
    "a rainy afternoon in a small town", "how bees make honey", "the first day at a new school",
    "why the sky looks blue", "a walk along the beach at sunset", "how to care for a houseplant",
    "the history of the bicycle", "a busy train station in the morning", "why sleep matters",
    "how a rainbow forms", "a favourite childhood game", "the life of a lighthouse keeper",
    "how to make a cup of tea", "a mountain village in winter", "why people keep diaries",
    "the sound of a thunderstorm", "how volcanoes erupt", "a market on a Saturday morning",
    "learning to swim", "the moon's phases", "a library late at night", "how to plan a picnic",
    "the migration of birds", "a letter from an old friend", "why recycling helps",
    "a quiet forest after snowfall", "how a seed becomes a tree", "the smell of fresh bread",
    "a city seen from a rooftop", "how to stay calm before an exam", "the job of a firefighter",
    "a lost umbrella", "how clocks keep time", "a garden in spring", "the ocean's tides",
    "a robot learning to paint", "how to welcome a new neighbour", "the last day of summer",
    "a journey on a night bus", "why cats purr", "a museum full of old maps", "how to save money",
    "a festival of lanterns", "the taste of a ripe mango", "how bridges stay up",
    "a dog waiting at the door", "why we dream", "a small bakery at dawn", "the northern lights",
    "how to write a thank-you note", "a sailing trip", "the sounds of a farm", "a broken clock",
    "how the heart pumps blood", "a picnic that went wrong", "the first snow of the year",
    "a visit to grandparents", "how maps are made", "a kite caught in a tree", "the desert at night",
)
REQUESTS = (
    "Write a short paragraph about {topic}.", "Describe {topic}.", "Explain {topic} to a child.",
    "Write a brief note to a friend about {topic}.", "Tell a very short story about {topic}.",
    "Share a few thoughts on {topic}.", "Write a short blog post about {topic}.",
    "Give a quick description of {topic}.",
)
WORDS = ("light", "quiet", "water", "morning", "friend", "simple", "bright", "journey", "warm", "small",
         "green", "story", "gentle", "home", "careful", "happy")
END_PHRASES = ("That is all for now.", "Hope this helps.", "Thank you for reading.", "See you soon.")


def _one_of(rng, options):
    return options[rng.randrange(len(options))]


def _words(rng, k):
    return rng.sample(WORDS, k)


# Each constraint: IFEval's instruction id -> make(rng, request) -> (the instruction's text, its
# kwargs, as IFEval's rows name them).
def _lowercase(rng, request):
    return "Write your whole answer in lowercase letters only, with no capital letters at all.", {}


def _capital(rng, request):
    return "Write your whole answer in capital letters only.", {}


def _no_comma(rng, request):
    return _one_of(rng, ("Do not use any commas in your reply.", "Avoid commas entirely.")), {}


def _end_checker(rng, request):
    phrase = _one_of(rng, END_PHRASES)
    return f'Close your reply with the words "{phrase}" and write nothing after them.', {"end_phrase": phrase}


def _quotation(rng, request):
    return "Put your entire answer inside double quotation marks.", {}


def _title(rng, request):
    return "Begin with a title between double angle brackets, for example <<a title>>.", {}


def _existence(rng, request):
    a, b = _words(rng, 2)
    return f'Use the words "{a}" and "{b}" somewhere in your answer.', {"keywords": [a, b]}


def _forbidden(rng, request):
    a, b = _words(rng, 2)
    return f'Do not use the words "{a}" or "{b}".', {"forbidden_words": [a, b]}


def _postscript(rng, request):
    marker = _one_of(rng, ("P.S.", "P.P.S"))
    return f"After your answer, add a postscript that begins with {marker}", {"postscript_marker": marker}


def _bullets(rng, request):
    n = rng.randint(2, 4)
    return (f"Answer with exactly {n} markdown bullet points, each line starting with '* '.",
            {"num_bullets": n})


def _json(rng, request):
    return "Format your entire reply as JSON.", {}


def _repeat(rng, request):
    return ("First copy the request above exactly, leaving out this sentence, then answer it.",
            {"prompt_to_repeat": request})


def _highlights(rng, request):
    n = rng.randint(1, 3)
    return (f"Highlight at least {n} part{'s' if n > 1 else ''} of your answer with markdown, "
            "like *a highlighted part*.", {"num_highlights": n})


def _frequency(rng, request):
    word, k = _one_of(rng, WORDS), rng.randint(2, 3)
    return (f'Use the word "{word}" at least {k} times.',
            {"keyword": word, "frequency": k, "relation": "at least"})


def _letter(rng, request):
    letter, k = _one_of(rng, "aeiostnr"), rng.randint(3, 8)
    return (f'The letter "{letter}" should occur {k} or more times in your reply.',
            {"letter": letter, "let_frequency": k, "let_relation": "at least"})


def _capital_words(rng, request):
    k = rng.randint(2, 4)
    return (f"Include at least {k} words written entirely in capital letters.",
            {"capital_frequency": k, "capital_relation": "at least"})


def _placeholders(rng, request):
    n = rng.randint(1, 3)
    return (f"Include at least {n} placeholder{'s' if n > 1 else ''} in square brackets, such as [name].",
            {"num_placeholders": n})


def _sentences(rng, request):
    n = rng.randint(3, 6)
    return f"Use fewer than {n} sentences.", {"num_sentences": n, "relation": "less than"}


def _few_words(rng, request):
    n = _one_of(rng, (40, 50, 60, 80))
    return f"Keep your answer under {n} words.", {"num_words": n, "relation": "less than"}


CONSTRAINTS = {
    "change_case:english_lowercase": _lowercase, "change_case:english_capital": _capital,
    "punctuation:no_comma": _no_comma, "startend:end_checker": _end_checker, "startend:quotation": _quotation,
    "detectable_format:title": _title, "keywords:existence": _existence,
    "keywords:forbidden_words": _forbidden, "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": _bullets, "detectable_format:json_format": _json,
    "combination:repeat_prompt": _repeat, "detectable_format:number_highlighted_sections": _highlights,
    "keywords:frequency": _frequency, "keywords:letter_frequency": _letter,
    "change_case:capital_word_frequency": _capital_words, "detectable_content:number_placeholders": _placeholders,
    "length_constraints:number_sentences": _sentences, "length_constraints:number_words": _few_words,
}
FAMILY = frozenset(CONSTRAINTS)
# Pairs that cannot both hold (or that make a reply's start or end ambiguous); never drawn together.
_CASES = {"change_case:english_lowercase", "change_case:english_capital", "change_case:capital_word_frequency"}
_WRAPS = {"startend:quotation", "detectable_format:json_format", "startend:end_checker", "detectable_format:title",
          "detectable_content:postscript", "combination:repeat_prompt", "detectable_format:number_bullet_lists"}
_COUNTS = {"length_constraints:number_sentences", "length_constraints:number_words",
           "detectable_format:number_bullet_lists"}


def _compatible(a: str, b: str) -> bool:
    return not any(a in group and b in group for group in (_CASES, _WRAPS, _COUNTS)) and a != b


def in_family(record: dict) -> bool:
    """An IFEval row that asks only for constraints this task trains, with lengths only as upper
    bounds ("less than"): what a short answer can meet."""
    for instruction, kwargs in zip(record["instruction_id_list"], record.get("kwargs") or []):
        if instruction not in FAMILY:
            return False
        kwargs = kwargs or {}
        if instruction.startswith("length_constraints:") and kwargs.get("relation") != "less than":
            return False
    return True


def constraints(n: int, split: str = "train", seed: int = 0, max_constraints: int = 2,
                two_share: float = 0.3, only: list[str] | None = None) -> list[dict]:
    """`n` distinct prompts, each an ordinary request with 1 or (with chance `two_share`, up to
    `max_constraints`) 2 compatible constraints appended; `only`: draw from these instruction ids
    alone."""
    ids = sorted(only) if only else sorted(CONSTRAINTS)
    unknown = [i for i in ids if i not in CONSTRAINTS]
    if unknown:
        raise ValueError(f"unknown constraints {unknown}; known: {', '.join(sorted(CONSTRAINTS))}")
    if max_constraints not in (1, 2):
        raise ValueError("max_constraints must be 1 or 2")

    def make(rng):
        request = _one_of(rng, REQUESTS).format(topic=_one_of(rng, TOPICS))
        chosen = [_one_of(rng, ids)]
        if max_constraints == 2 and rng.random() < two_share:
            others = [i for i in ids if _compatible(chosen[0], i)]
            if others:
                chosen.append(_one_of(rng, others))
        texts, kwargs = [], []
        for instruction in chosen:
            text, arguments = CONSTRAINTS[instruction](rng, request)
            texts.append(text)
            kwargs.append(arguments)
        prompt = " ".join([request, *texts])
        return prompt, {"prompt": [{"role": "user", "content": prompt}], "instruction_id_list": chosen,
                        "kwargs": kwargs, "ground_truth": json.dumps(chosen), "verifier": "ifeval"}

    return distinct(n, split, random.Random(f"constraints-{seed}"), make)
