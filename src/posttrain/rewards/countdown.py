"""`countdown`: reach a target with the given numbers, each used at most once, with + - * /.

The expression is evaluated exactly (fractions) by walking its syntax tree: numbers, the four
operations and parentheses only. Nothing else is evaluated, so no input can run code.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from fractions import Fraction

from posttrain.rewards.answers import extract_final_answer
from posttrain.rewards.numeric import completion_text

MAX_EXPRESSION_CHARS = 200
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def _evaluate(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError("division by zero")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    raise ValueError(f"not allowed in a countdown expression: {ast.dump(node)[:40]}")


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]]:
    """Value of an arithmetic expression and the numbers it uses.

    >>> evaluate_expression("(6 - 2) * 5")
    (Fraction(20, 1), [6, 2, 5])
    """
    expression = expression.replace("×", "*").replace("÷", "/").strip().rstrip("=").strip()
    if len(expression) > MAX_EXPRESSION_CHARS or not re.fullmatch(r"[\d\s+\-*/().]+", expression):
        raise ValueError("not a countdown expression")
    used: list[int] = []
    return _evaluate(ast.parse(expression, mode="eval").body, used), used


def countdown_correct(expression: str | None, numbers: list[int], target: int) -> bool:
    if not expression:
        return False
    expression = expression.split("=")[0]
    try:
        value, used = evaluate_expression(expression)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        return False
    return value == target and not Counter(used) - Counter(numbers)


def countdown_reward(completions, ground_truth=None, numbers=None, target=None, **columns) -> list[float]:
    """1.0 where the final answer is an expression that reaches the target using each given
    number at most once. Numbers and target come as columns or as JSON in ground_truth.

    >>> countdown_reward(["Answer: (6 - 2) * 5", "Answer: 6 * 5"], numbers=[[2, 5, 6]] * 2, target=[20, 20])
    [1.0, 0.0]
    """
    scores = []
    for i, completion in enumerate(completions):
        if numbers is not None and target is not None:
            nums, goal = numbers[i], target[i]
        else:
            truth = ground_truth[i]
            truth = json.loads(truth) if isinstance(truth, str) else truth
            nums, goal = truth["numbers"], truth["target"]
        answer = extract_final_answer(completion_text(completion))
        scores.append(1.0 if countdown_correct(answer, list(nums), int(goal)) else 0.0)
    return scores


def unreadable_truth(record: dict) -> str | None:
    """Why `countdown` cannot read the record (None: it can): `numbers` and `target` columns, or
    both as JSON in ground_truth."""
    if record.get("numbers") is not None and record.get("target") is not None:
        return None
    truth = record.get("ground_truth")
    try:
        truth = json.loads(truth) if isinstance(truth, str) else truth
        [int(n) for n in truth["numbers"]], int(truth["target"])
    except (ValueError, TypeError, KeyError):
        return "no numbers and target (columns, or JSON in ground_truth)"
    return None


countdown_reward.unreadable_truth = unreadable_truth
