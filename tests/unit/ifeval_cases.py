"""A case set for IFEval agreement: responses shaped like real model outputs (markdown, lists,
unicode, code fences, think blocks cut off, other languages), each checked against every
instruction type with arguments around the response's own counts (thresholds hit exactly),
plus the cases the reference's quirks are about. Written here; no case is taken from IFEval.
"""

from __future__ import annotations

import re

RESPONSES = [
    # 0 markdown answer with a header, bold, a bullet list and a closing question
    "# Planning a Trip to Kyoto\n\nKyoto is **best** visited in spring or autumn. Here is what to pack:\n\n"
    "* A light jacket\n* Comfortable shoes\n* A rail pass\n\nThe temples open early, so start at 7 a.m. "
    "if you can. Any other questions?",
    # 1 numbered list with decimals and abbreviations
    "Here are the steps:\n\n1. Preheat the oven to 180 C.\n2. Mix 2.5 cups of flour with 1.5 cups of sugar.\n"
    "3. Bake for 25 min. Dr. Smith, e.g., swears by 30 min. instead.\n\nThat's it! Enjoy the cake.",
    # 2 a code fence
    "You can reverse a list in Python like this:\n\n```python\ndef reverse(xs):\n    return xs[::-1]\n```\n\n"
    "It runs in linear time. Note that `xs.reverse()` works in place, and returns None.",
    # 3 unicode, emoji, accents
    "Café au lait — naïve résumé 😀. Straße, Ångström, and ﬁnance are all words. Is this fine? Yes!",
    # 4 JSON in a ```Json fence
    "```Json\n{\"name\": \"Ada\", \"languages\": [\"English\", \"French\"], \"born\": 1815}\n```",
    # 5 JSON without a fence
    "{\"answer\": 42, \"unit\": \"none\"}",
    # 6 all lower case english
    "the river runs quietly past the old mill, and nobody in the village remembers when it was built. "
    "children still play on its banks every summer.",
    # 7 all capitals
    "THE RIVER RUNS QUIETLY PAST THE OLD MILL. NOBODY IN THE VILLAGE REMEMBERS WHEN IT WAS BUILT. "
    "I THINK THE U.S. HAS MANY LIKE IT.",
    # 8 postscript at the end
    "Thank you for your letter. I will reply properly next week.\n\nBest,\nSam\n\nP.S. The cat says hello.",
    # 9 postscript written "p. s." inside a line, and a P.P.S
    "See you soon, my friend. p. s. bring the maps. P.P.S don't forget the snacks",
    # 10 paragraphs with *** dividers
    "The first paragraph talks about the sea.\n***\nThe second one is about mountains.\n***\n"
    "The third paragraph is about the desert.",
    # 11 paragraphs with spaced dividers "* * *" (markdown's other spelling)
    "Morning came slowly.\n\n* * *\n\nBy noon the fog had lifted.\n\n* * *\n\nAt night it returned.",
    # 12 leading and trailing *** dividers
    "***\nOnly one paragraph sits between these dividers.\n***",
    # 13 two responses
    "Response one: the sky is blue because of Rayleigh scattering.\n******\n"
    "Response two: air molecules scatter short wavelengths more than long ones.",
    # 14 two responses with a leading divider and identical halves
    "******\nSame answer.\n******\nSame answer.",
    # 15 a title and placeholders
    "<<A Letter of Recommendation>>\n\nDear [name],\n\nI am writing to recommend [candidate] for the "
    "position at [company]. They worked with me at [address] for three years.",
    # 16 an empty title and a nested bracket
    "<<>>\nHere is [a [nested] placeholder] and [another one].",
    # 17 sections
    "Section 1\nIntroduce the problem.\n\nSection 2\nDescribe the method.\n\nSECTION 3\nReport results.",
    # 18 highlights: italics and bold, one empty
    "Remember: *this part is highlighted* and **this part is bold**. An empty one ** does not count, "
    "but *another highlight* does.",
    # 19 german
    "Die Sonne scheint heute besonders hell, und die Kinder spielen im Garten. Morgen soll es regnen.",
    # 20 french
    "Le chat dort sur le canapé pendant que la pluie tombe doucement sur la ville endormie.",
    # 21 quoted response
    "\"Wisdom begins in wonder, as the saying goes, and ends in a quiet kind of certainty.\"",
    # 22 ends inside quotes
    "\"Thank you for reading. Is there anything else I can help with?\"",
    # 23 constrained responses
    "After weighing the evidence carefully, My answer is yes.",
    "my answer is no.",
    # 25 dash bullets and star bullets mixed, indented, and a *** line (not a bullet)
    "Shopping list:\n- apples\n- bread\n  * butter\n***\n*Italic line, not a bullet?*\n-no space dash",
    # 26 repeats the prompt first
    "Write a haiku about the sea. Waves fold into foam / the gull writes its name in wind / tide erases it",
    # 27 a single word and trailing whitespace
    "Yes.   \n",
    # 28 empty and whitespace-only responses
    "",
    "   \n\t ",
    # 30 paragraphs separated by blank lines, with quotes on the first word
    "\"Summer\" was the word she used.\n\nAutumn followed, as it always does.\n\n\n\nWinter, finally, came.",
    # 31 leading blank paragraph
    "\n\nFirst real paragraph here.\n\nSecond paragraph here.",
    # 32 capitals in a normal text: I, A, acronyms
    "I met A. J. at NASA, and we talked about the EU, the UK and the U.S. economy. OK, I admit it was LONG.",
    # 33 commas and none
    "No commas here at all just words and more words",
    # 34 ellipsis and question marks
    "Wait... is that right? Let me think... Yes. It is! Really? Really.",
    # 35 a regex-special keyword and a keyword as a substring
    "The Greek letter (beta) appears here, and alphabet contains alpha. Betas are tested too.",
]

# Instruction types with the arguments each response is checked with. Callables take the
# response and give a list of kwargs (thresholds at the response's own counts, +-1).


def _words(r):
    return len(re.findall(r"\w+", r))


def _sentences_estimate(r):
    return max(1, len(re.findall(r"[.!?]+(?=\s|$)", r)))


def _around(n):
    return sorted({max(1, n - 1), max(1, n), n + 1})


INSTRUCTIONS = {
    "keywords:existence": lambda r: [{"keywords": ["kyoto", "rail"]}, {"keywords": ["the"]},
                                     {"keywords": ["(beta)"]}, {"keywords": ["alpha", "bet"]}],
    "keywords:forbidden_words": lambda r: [{"forbidden_words": ["the"]}, {"forbidden_words": ["bet", "cat"]},
                                           {"forbidden_words": ["yes"]}],
    "keywords:frequency": lambda r: [{"keyword": k, "frequency": f, "relation": rel}
                                     for k in ("the", "alpha")
                                     for f in _around(len(re.findall(k, r, re.I)))
                                     for rel in ("less than", "at least")],
    "keywords:letter_frequency": lambda r: [{"letter": "e", "let_frequency": f, "let_relation": rel}
                                            for f in _around(r.lower().count("e"))
                                            for rel in ("less than", "at least")],
    "language:response_language": lambda r: [{"language": "en"}, {"language": "de"}, {"language": "fr"}],
    "length_constraints:number_words": lambda r: [{"num_words": n, "relation": rel} for n in _around(_words(r))
                                                  for rel in ("less than", "at least")],
    "length_constraints:number_sentences": lambda r: [{"num_sentences": n, "relation": rel}
                                                      for n in _around(_sentences_estimate(r))
                                                      for rel in ("less than", "at least")],
    "length_constraints:number_paragraphs": lambda r: [{"num_paragraphs": n} for n in (1, 2, 3)],
    "length_constraints:nth_paragraph_first_word": lambda r: [
        {"num_paragraphs": n, "nth_paragraph": k, "first_word": w}
        for n, k, w in ((3, 1, "summer"), (2, 1, "first"), (3, 3, "winter"), (2, 2, "second"), (1, 1, "the"))],
    "detectable_content:postscript": lambda r: [{"postscript_marker": m} for m in ("P.S.", "P.P.S", "PS:")],
    "detectable_content:number_placeholders": lambda r: [{"num_placeholders": n} for n in (1, 2, 4, 5)],
    "detectable_format:number_bullet_lists": lambda r: [{"num_bullets": n} for n in (2, 3, 4, 5)],
    "detectable_format:title": lambda r: [{}],
    "detectable_format:constrained_response": lambda r: [{}],
    "detectable_format:number_highlighted_sections": lambda r: [{"num_highlights": n} for n in (1, 2, 3, 4)],
    "detectable_format:multiple_sections": lambda r: [{"section_spliter": s, "num_sections": n}
                                                      for s in ("Section", "SECTION") for n in (1, 3)],
    "detectable_format:json_format": lambda r: [{}],
    "combination:repeat_prompt": lambda r: [{"prompt_to_repeat": "Write a haiku about the sea."},
                                            {"prompt_to_repeat": "Here are the steps:"}],
    "combination:two_responses": lambda r: [{}],
    "change_case:english_capital": lambda r: [{}],
    "change_case:english_lowercase": lambda r: [{}],
    "change_case:capital_word_frequency": lambda r: [
        {"capital_frequency": n, "capital_relation": rel}
        for n in _around(len([w for w in re.findall(r"\S+", r) if w.isupper()]))
        for rel in ("less than", "at least")],
    "startend:end_checker": lambda r: [{"end_phrase": "Any other questions?"},
                                       {"end_phrase": "Is there anything else I can help with?"}],
    "startend:quotation": lambda r: [{}],
    "punctuation:no_comma": lambda r: [{}],
}


def cases() -> list[tuple[str, dict, str]]:
    """(instruction id, kwargs, response) for every response and every instruction's arguments."""
    out = []
    for instruction, arguments in INSTRUCTIONS.items():
        for response in RESPONSES:
            for kwargs in arguments(response):
                out.append((instruction, kwargs, response))
    return out
