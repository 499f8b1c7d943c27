"""Gold/prediction pairs for the math reward, in the answer forms math-verify's documentation
lists (integers, decimals, thousands separators, fractions, roots, pi, sets, intervals,
percentages, expressions, equations, multiple-choice letters, text answers), each said in the
ways completions say answers (bare, \\boxed{}, $...$, "the final answer is", ####, Answer:,
<answer>), plus near misses that must not match. Written here from the documented forms.
"""

from __future__ import annotations

# (gold, [equivalent spellings of it as a model would write the bare answer])
EQUIVALENT = [
    ("7", ["7", "7.0", "07", "+7", "7.00"]),
    ("-5", ["-5", "-5.0", "- 5"]),
    ("1000", ["1000", "1,000", "1000.0"]),
    ("1234567", ["1,234,567", "1234567"]),
    ("0.5", ["0.5", ".5", r"\frac{1}{2}", "1/2", r"\dfrac{1}{2}", r"\frac12", "2/4"]),
    (r"\frac{3}{4}", ["0.75", "3/4", r"\frac{3}{4}", r"\tfrac{3}{4}", r"\frac{6}{8}"]),
    (r"-\frac{2}{3}", [r"-\frac{2}{3}", r"\frac{-2}{3}", "-2/3", r"-\dfrac{2}{3}"]),
    (r"\frac{7}{2}", ["3.5", "7/2", r"\frac{14}{4}"]),
    (r"2\sqrt{2}", [r"2\sqrt{2}", r"\sqrt{8}", r"2 \sqrt 2", r"\sqrt{2} \cdot 2"]),
    (r"\frac{\sqrt{2}}{2}", [r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", r"\sqrt{2}/2", r"\frac{\sqrt2}{2}"]),
    (r"3\sqrt{3}", [r"3\sqrt{3}", r"\sqrt{27}"]),
    (r"2\pi", [r"2\pi", r"2 \pi", r"\pi \cdot 2"]),
    (r"\frac{\pi}{4}", [r"\frac{\pi}{4}", r"\pi/4", r"\frac{1}{4}\pi"]),
    (r"\{1, 2, 3\}", [r"\{1,2,3\}", r"\{3, 2, 1\}", r"\{2,1,3\}"]),
    ("(0, 1]", ["(0, 1]", "(0,1]"]),
    (r"[2, \infty)", [r"[2, \infty)", r"[2,\infty)"]),
    (r"(-\infty, 3)", [r"(-\infty, 3)", r"(-\infty,3)"]),
    (r"50\%", [r"50\%", "50%"]),
    ("x^2 + 2x + 1", ["x^2+2x+1", "(x+1)^2", "1 + 2x + x^2"]),
    ("2x", ["2x", "2 x", "x \\cdot 2", "2*x"]),
    (r"\frac{x}{2}", [r"\frac{x}{2}", "x/2", "0.5x"]),
    ("a^2 - b^2", ["(a-b)(a+b)", "a^2-b^2"]),
    ("3 + 4i", ["3+4i", "4i + 3"]),
    ("10", ["x = 10", "10", "x=10"]),
    ("12", ["12", "12.0"]),
    ("B", ["B", r"\text{B}", r"\text{(B)}", "(B)"]),
    ("\\text{Monday}", [r"\text{Monday}", r"\text{monday}"]),
    ("100", ["100", "1e2", r"10^2", "100.0"]),
    ("25", ["25", "5^2", r"\sqrt{625}"]),
    ("0.125", [r"\frac{1}{8}", "0.125", "1/8"]),
    (r"1, 2", [r"1, 2", r"2, 1"]),
    ("6", ["6", "3!", r"\binom{4}{2}"]),
    ("-1", ["-1", "-1.0", r"\cos(\pi)"]),
]

# Ways a completion says its final answer (`{}` is the bare answer as written above).
FRAMINGS = [
    "{}",
    r"The answer is $\boxed{{{}}}$.",
    "Adding these up we get ... so the final answer is ${}$.",
    "Step 1: work.\nStep 2: more work.\n#### {}",
    "Reasoning here.\nAnswer: ${}$",
    "<think>let me compute</think>\n<answer>{}</answer>",
    r"First I guessed $\boxed{{999}}$, but checking again the answer is \boxed{{{}}}",
]

# (gold, prediction) that are not equal: any score above 0 is a false positive.
NEAR_MISSES = [
    ("7", "8"), ("7", "-7"), ("7", "70"), ("1000", "100"), ("1000", "1,001"), ("0.5", "0.51"),
    (r"\frac{3}{4}", r"\frac{4}{3}"), (r"\frac{3}{4}", "0.7"), (r"-\frac{2}{3}", r"\frac{2}{3}"),
    (r"2\sqrt{2}", r"\sqrt{2}"), (r"2\sqrt{2}", r"2\sqrt{3}"), (r"2\pi", r"\pi"), (r"2\pi", "6.28"),
    (r"\{1, 2, 3\}", r"\{1, 2\}"), (r"\{1, 2, 3\}", r"\{1, 2, 4\}"), ("(0, 1]", "(0, 1)"), ("(0, 1]", "[0, 1]"),
    (r"[2, \infty)", r"(2, \infty)"), ("x^2 + 2x + 1", "(x-1)^2"), ("x^2 + 2x + 1", "x^2+2x"),
    ("2x", "2y"), ("2x", "x^2"), ("3 + 4i", "3-4i"), ("10", "x = 11"), ("B", "C"), ("B", r"\text{(C)}"),
    (r"\text{Monday}", r"\text{Tuesday}"), ("100", "1e3"), ("25", "5^3"), ("0.125", r"\frac{1}{4}"),
    ("6", "4!"), ("-1", "1"), ("12", "12.5"), (r"50\%", "5%"), ("1, 2", "1, 3"), ("1234567", "1,234,576"),
]


def equivalent_pairs() -> list[tuple[str, str]]:
    """(gold, completion) for every spelling in every framing."""
    return [(gold, framing.format(spelling))
            for gold, spellings in EQUIVALENT for spelling in spellings for framing in FRAMINGS]


def near_miss_pairs() -> list[tuple[str, str]]:
    return [(gold, framing.format(wrong)) for gold, wrong in NEAR_MISSES for framing in FRAMINGS]
