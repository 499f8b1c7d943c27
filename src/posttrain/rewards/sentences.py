"""English sentence splitting that needs no download: nltk's Punkt algorithm (Kiss & Strunk
2006, the tokenizer IFEval's reference counts sentences with) given parameters written here.

The reference loads nltk's trained English Punkt model, which nltk must download (punkt_tab)
and which no package on PyPI ships. What the trained model knows that matters for counting
sentences in model answers is (1) which words ending in a period are abbreviations ("e.g.",
"Dr.", "U.S.", "etc."), and (2) which words are ordinary words that start a sentence when
capitalised after an abbreviation, an ellipsis or an initial ("...  The", "etc. It"), as
opposed to names ("J. K. Rowling", "Dr. Smith"). Both are given here as lists: common English
abbreviations, and common English words marked as seen in lower case inside sentences.
docs/rewards.md says how closely this agrees with the trained model's counts.
"""

from __future__ import annotations

ABBREVIATIONS = """
a.m p.m e.g i.e etc vs v cf al approx ca dept est fig figs no nos vol vols pp p ed eds
mr mrs ms dr prof sr jr st mt ft capt col gen gov lt sgt rev hon pres rep sen supt
co corp inc ltd llc bros assn intl univ
jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun
u.s u.k u.n u.s.a e.u d.c l.a n.y ph.d m.d b.a m.a b.s m.s
ave blvd rd hwy
min max sec hr hrs yr yrs mo mos wk wks oz lb lbs kg km cm mm ml sq
misc esp resp incl excl dist ref refs sec secs ch chap art
""".split()

# Ordinary words: capitalised after a period that might not end a sentence, they start one.
COMMON_WORDS = """
the a an this that these those it its he she we they i you his her our their my your
there here then thus so but and or yet however therefore moreover furthermore also
in on at by for from with without to of as if when while after before since because
although though once until unless where whether which who what why how
is are was were be been being has have had do does did can could will would should
may might must shall not no yes all each every some any many most more other such
one two three first second third next finally now today let note see use make consider
""".split()


def english_punkt():
    """A Punkt sentence tokenizer with the parameters above."""
    from nltk.tokenize.punkt import (_ORTHO_BEG_UC, _ORTHO_MID_LC, _ORTHO_UNK_LC, PunktParameters,
                                     PunktSentenceTokenizer)

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    params.sent_starters = set(COMMON_WORDS)
    for word in COMMON_WORDS:
        params.add_ortho_context(word, _ORTHO_BEG_UC | _ORTHO_MID_LC | _ORTHO_UNK_LC)
    return PunktSentenceTokenizer(params)


def split_sentences(text: str) -> list[str]:
    """
    >>> split_sentences("Dr. Smith went to Washington D.C. yesterday. It rained, e.g. all day... Then it stopped.")
    ['Dr. Smith went to Washington D.C. yesterday.', 'It rained, e.g. all day...', 'Then it stopped.']
    """
    return _tokenizer().tokenize(text)


_cached = None


def _tokenizer():
    global _cached
    if _cached is None:
        _cached = english_punkt()
    return _cached
