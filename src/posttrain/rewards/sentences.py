"""English sentence splitting as IFEval's reference does it: nltk's Punkt algorithm (Kiss &
Strunk 2006) with nltk's trained English model (`punkt_tab/english`), found without a download.

The reference loads that model through nltk.data, which means `nltk.download("punkt_tab")`.
posttrain looks for it, in order, in nltk's data path (where that download puts it) and in the
copy llama-index-core ships inside its wheel (PyPI; posttrain's `ifeval` extra, and `dev`).
Nothing of llama-index is imported: only the model's four text files are read.

Where neither is installed, the parameters written below stand in: common English
abbreviations, and common English words marked as seen in lower case inside sentences, which
is what the trained model knows that matters for counting sentences in model answers. The
reward says once, in the log, which one it uses. docs/rewards.md gives how closely the
stand-in agrees with the trained model on real responses.
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


def trained_english_dir() -> str | None:
    """The directory of nltk's trained English Punkt model, if one is installed, else None."""
    import importlib.util
    import os

    try:
        import nltk.data

        return str(nltk.data.find("tokenizers/punkt_tab/english/"))
    except LookupError:
        pass
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(root, "_static", "nltk_cache", "tokenizers", "punkt_tab", "english")
        if os.path.isfile(os.path.join(path, "ortho_context.tab")):
            return path
    return None


def trained_punkt():
    """nltk's trained English Punkt tokenizer, or None where it is not installed. The model's
    four text files (punkt_tab's format) are read here, the same way across nltk versions."""
    import os

    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    path = trained_english_dir()
    if path is None:
        return None

    def lines(name):
        with open(os.path.join(path, name), encoding="utf-8") as f:
            return [line.rstrip("\n") for line in f if line.strip()]

    params = PunktParameters()
    params.abbrev_types = set(lines("abbrev_types.txt"))
    params.sent_starters = set(lines("sent_starters.txt"))
    params.collocations = {tuple(line.split("\t")) for line in lines("collocations.tab")}
    for line in lines("ortho_context.tab"):
        word, flags = line.split("\t")
        params.ortho_context[word] = int(flags)
    return PunktSentenceTokenizer(params)


def sentence_tokenizer():
    """The trained model where it is installed, else the stand-in; logged once."""
    global _cached
    if _cached is None:
        import logging

        trained = trained_punkt()
        if trained is not None:
            _cached = trained
            logging.getLogger(__name__).info("sentences: nltk's trained English Punkt model")
        else:
            _cached = english_punkt()
            logging.getLogger(__name__).warning(
                "sentences: nltk's trained English Punkt model is not installed (pip install "
                "'posttrain[ifeval]'); IFEval sentence counts use posttrain's stand-in parameters, "
                "which can differ from the reference's (docs/rewards.md)")
    return _cached


def english_punkt():
    """A Punkt sentence tokenizer with the stand-in parameters above."""
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
    >>> split_sentences("Dr. Smith went to Washington D.C. yesterday. It rained all day. Then it stopped.")
    ['Dr. Smith went to Washington D.C. yesterday.', 'It rained all day.', 'Then it stopped.']
    """
    return sentence_tokenizer().tokenize(text)


_cached = None
