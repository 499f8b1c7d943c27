"""Verifications per second for each verifier, with and without process parallelism, and the
worst latency of pathological inputs against each reward's bound.

    python bench/rewards.py                 # ~3 minutes on 2 CPU cores
    python bench/rewards.py --rounds 7 --only math,ifeval

Each rate is measured `--rounds` times, alternating the serial (processes=1) and parallel
(processes=all cores) settings round by round, and printed as the median with the lowest and
highest round. The inputs are typical ones, written here: GSM8K-style completions for numeric;
numbers, fractions and simple expressions (half of them wrong) for math; HumanEval-sized
functions with asserts for code; markdown responses with IFEval instructions for ifeval. A
shared machine moves the absolute rates (about half with the cores busy), so read them with the
CPU line printed first; the parallel/serial ratio is measured side by side.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from posttrain.rewards import REWARDS, build_reward  # noqa: E402
from posttrain.rewards.bounded import default_processes  # noqa: E402


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ----------------------------------------------------------------------------- inputs

def numeric_inputs(n: int, rng: random.Random):
    completions, golds = [], []
    for _ in range(n):
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        answer = a + b if rng.random() < 0.5 else a + b + 1
        completions.append(f"She has {a} apples and buys {b} more, so {a} + {b} = {answer}.\n#### {answer:,}")
        golds.append(str(a + b))
    return completions, golds, {}


def math_inputs(n: int, rng: random.Random):
    completions, golds = [], []
    for i in range(n):
        kind, right = i % 4, rng.random() < 0.5
        p, q = rng.randint(1, 40), rng.randint(2, 40)
        if kind == 0:  # an integer
            gold, said = str(p * q), str(p * q if right else p * q + 1)
        elif kind == 1:  # a decimal said as a fraction, or the reverse
            gold, said = f"{p / 4:g}", (rf"\frac{{{p}}}{{4}}" if right else rf"\frac{{{p + 1}}}{{4}}")
        elif kind == 2:  # a fraction
            gold, said = rf"\frac{{{p}}}{{{q}}}", (f"{p}/{q}" if right else f"{q}/{p + q}")
        else:  # a simple expression: the same, another spelling of it, or a different one
            gold = f"{p}x + {q}"
            said = rng.choice([f"{p}x+{q}", f"{q} + {p}x"]) if right else f"{p}x - {q}"
        completions.append(f"We simplify step by step and get {said}. Therefore the final answer is ${said}$.")
        golds.append(gold)
    return completions, golds, {}


def code_inputs(n: int, rng: random.Random):
    bodies = [
        ("def add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]),
        ("def is_palindrome(s):\n    s = ''.join(c.lower() for c in s if c.isalnum())\n    return s == s[::-1]\n",
         ["assert is_palindrome('A man, a plan, a canal: Panama')", "assert not is_palindrome('abc')"]),
        ("def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
         ["assert fib(10) == 55", "assert fib(1) == 1", "assert fib(0) == 0"]),
        ("def below_zero(ops):\n    total = 0\n    for op in ops:\n        total += op\n        if total < 0:\n"
         "            return True\n    return False\n", ["assert below_zero([1, -2])", "assert not below_zero([1, 2])"]),
        ("def sort_even(xs):\n    evens = sorted(xs[::2])\n    out = list(xs)\n    out[::2] = evens\n    return out\n",
         ["assert sort_even([5, 6, 3, 4]) == [3, 6, 5, 4]"]),
    ]
    completions, tests = [], []
    for i in range(n):
        body, asserts = bodies[i % len(bodies)]
        if rng.random() < 0.3:
            body = body.replace("return", "return None or", 1)  # broken for some asserts
        completions.append(f"Here is the function:\n\n```python\n{body}```\n")
        tests.append(asserts)
    return completions, None, {"tests": tests}


IFEVAL_RESPONSES = [
    "# Trip plan\n\nKyoto is **best** in spring. Pack:\n\n* A jacket\n* Shoes\n* A rail pass\n\nAny other questions?",
    "<<Report>>\n\nSection 1\nThe method works. It is fast.\n\nSection 2\nResults are *good*.\n\nP.S. thanks",
    "the river runs past the mill and nobody remembers when it was built. children play there each summer.",
    "```json\n{\"name\": \"Ada\", \"born\": 1815}\n```",
    "First answer here.\n******\nSecond, different answer here.",
]
IFEVAL_INSTRUCTIONS = [
    (["length_constraints:number_words", "detectable_format:number_bullet_lists"],
     [{"num_words": 20, "relation": "at least"}, {"num_bullets": 3}]),
    (["detectable_format:title", "detectable_format:multiple_sections", "detectable_content:postscript"],
     [{}, {"section_spliter": "Section", "num_sections": 2}, {"postscript_marker": "P.S."}]),
    (["punctuation:no_comma", "length_constraints:number_sentences", "keywords:frequency"],
     [{}, {"num_sentences": 2, "relation": "at least"}, {"keyword": "the", "frequency": 2, "relation": "at least"}]),
    (["detectable_format:json_format", "change_case:capital_word_frequency"],
     [{}, {"capital_frequency": 2, "capital_relation": "less than"}]),
    (["combination:two_responses", "startend:end_checker"], [{}, {"end_phrase": "answer here."}]),
]


def ifeval_inputs(n: int, rng: random.Random, language: bool = False):
    completions, ids, kwargs = [], [], []
    for i in range(n):
        completions.append(IFEVAL_RESPONSES[i % 5])
        instruction_ids, arguments = IFEVAL_INSTRUCTIONS[i % 5]
        if language:
            instruction_ids, arguments = [*instruction_ids, "language:response_language"], [*arguments, {"language": "en"}]
        ids.append(instruction_ids)
        kwargs.append(arguments)
    return completions, None, {"instruction_id_list": ids, "kwargs": kwargs}


# ----------------------------------------------------------------------------- measuring

def rate(reward, completions, golds, columns) -> float:
    kwargs = dict(columns)
    if golds is not None:
        kwargs["ground_truth"] = golds
    start = time.perf_counter()
    reward(completions, **kwargs)
    return len(completions) / (time.perf_counter() - start)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):>9,.0f}/s  [{min(values):,.0f} - {max(values):,.0f}]"


def throughput(rounds: int, only: set[str]) -> None:
    rng = random.Random(0)
    cores = default_processes()
    cases = [  # (label, reward name, options, inputs, n, parallel option)
        ("numeric", "numeric", {}, numeric_inputs, 20000, False),
        ("math", "math", {}, math_inputs, 2000, True),
        ("code", "code", {}, code_inputs, 60, True),
        ("ifeval", "ifeval", {}, ifeval_inputs, 5000, False),
        ("ifeval + response language", "ifeval", {}, lambda n, r: ifeval_inputs(n, r, language=True), 600, True),
    ]
    print(f"{'reward':28s} {'processes':>9s}  {'verifications per second (median [min - max])':s}")
    for label, name, options, make, n, parallel in cases:
        if only and name not in only:
            continue
        settings = [1, cores] if parallel and cores > 1 else [None]
        rewards = {p: build_reward(name, {**options, **({"processes": p} if p else {})}) for p in settings}
        for reward in rewards.values():
            reward.warm()
        rates = {p: [] for p in settings}
        for r in range(rounds):
            completions, golds, columns = make(n, random.Random(r))
            for p in settings:
                rates[p].append(rate(rewards[p], completions, golds, columns))
        for p in settings:
            print(f"{label:28s} {p or 'in-process':>9}  {spread(rates[p])}")
        if len(settings) == 2:
            ratios = [b / a for a, b in zip(rates[settings[0]], rates[settings[1]])]
            print(f"{'':28s} {'ratio':>9}  {statistics.median(ratios):.2f}x parallel / serial "
                  f"[{min(ratios):.2f} - {max(ratios):.2f}]")
    del rng


def worst_latency(only: set[str]) -> None:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "unit"))
    from test_reward_bounds import COLUMNS, OPTIONS, PATHOLOGICAL, model_options  # the test's inputs

    bounds = {"math": 2.0, "ifeval": 2.0, "code": 10.0, "verifier": 2.0}
    print(f"\n{'reward':20s} {'bound':>6s} {'worst':>7s} {'back-to-back':>13s}  worst input (1 MB inputs; default bounds)")
    for name in sorted(REWARDS):
        if only and name not in only:
            continue
        reward = build_reward(name, {**OPTIONS.get(name, {}), **model_options(name)})
        worst, which, chained = 0.0, "", 0.0
        if name in ("reward_model", "llm_judge"):  # loading the model once is not an input's cost
            reward(["warm up"], **COLUMNS.get(name, {}))
        for label, text in PATHOLOGICAL.items():  # each on warm workers: the per-input bound
            reward.warm()
            start = time.perf_counter()
            reward([text], **COLUMNS.get(name, {}))
            took = time.perf_counter() - start
            if took > worst:
                worst, which = took, label
        reward.warm()
        for label, text in PATHOLOGICAL.items():  # one after another: a killed worker's replacement
            start = time.perf_counter()  # may still be warming up when the next input comes
            reward([text], **COLUMNS.get(name, {}))
            chained = max(chained, time.perf_counter() - start)
        bound = bounds.get(name)
        print(f"{name:20s} {bound if bound else '-':>6} {worst:>6.2f}s {chained:>12.2f}s  {which}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated reward names")
    parser.add_argument("--no-latency", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    only = {x for x in args.only.split(",") if x}
    print(f"CPU: {cpu_name()}; {default_processes()} cores available; Python {platform.python_version()}\n")
    throughput(args.rounds, only)
    if not args.no_latency:
        worst_latency(only)


if __name__ == "__main__":
    main()
