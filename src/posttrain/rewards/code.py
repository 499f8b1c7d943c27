"""`code`: run the completion's Python against the record's tests in the sandbox; the score is
the fraction of tests passed.

Tests come as either
- `tests: ["assert add(1, 2) == 3", ...]` (or HumanEval's `def check(candidate): ...` followed
  by `check(add)`) — the program is loaded in a sandbox (sandbox.Candidate) and each test runs
  *here*, in the caller, with every function the program defines standing in as a stub that
  calls it across the pipe. What a test sees: Python's builtins (always the real ones), the
  names the test binds itself (its `def check`, its imports), and then the program's own names
  that are neither: each function as a stub, each plain value as its value, each module the
  program imported as the caller's own copy, if it is one of the plain standard-library modules
  in TEST_MODULES (any other module: absent). A program that defines `set`, `len` or `check` changes nothing a test looks up. Arguments and results cross as plain data (numbers, strings, bytes,
  lists, tuples, sets, dicts, None), so the verdict is computed by an interpreter the program
  cannot reach: an object whose `__eq__` is always true cannot cross, and nothing the program
  does to its own interpreter (builtins, frames, gc, the protocol itself) changes what the test
  compares. A test passes when it raises nothing. The tests are the dataset's, trusted like the
  recipe; the program never sees them.
- `test_cases: [{"input": "1 2\\n", "output": "3\\n"}, ...]` — stdin/stdout programs, one
  sandboxed process per case, judged here (output compared with whitespace trimmed).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

from posttrain.rewards.bounded import default_processes
from posttrain.rewards.numeric import completion_text
from posttrain.rewards.sandbox import Candidate, CandidateError, Limits, decode, run_untrusted

_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S)


def extract_code(completion) -> str:
    """The last fenced code block, or the whole text when there is none."""
    text = completion_text(completion)
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


class _Remote:
    """A function of the sandboxed program, as the tests see it."""

    def __init__(self, candidate: Candidate, name: str):
        self.candidate, self.__name__ = candidate, name

    def __call__(self, *args, **kwargs):
        return self.candidate.call(self.__name__, list(args), kwargs)


_BUILTIN_NAMES = frozenset(dir(builtins))
# The standard-library modules a test may use through the program's import (MBPP's tests call
# `math.isclose` where the solution imported math): the caller's own copies, without side effects.
TEST_MODULES = frozenset({"math", "cmath", "re", "string", "itertools", "functools", "operator", "collections",
                          "heapq", "bisect", "statistics", "fractions", "decimal", "datetime", "copy", "json"})


def _bound_by(test: str) -> set[str]:
    """The names a test binds itself (assignments, defs, classes, imports), which the program's
    names must not shadow."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return set()
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return bound


def _test_namespace(candidate: Candidate, test: str) -> dict:
    namespace = {"__builtins__": builtins, "__name__": "__test__"}
    shadowing = _BUILTIN_NAMES | _bound_by(test)
    for name, entry in candidate.names.items():
        if name in shadowing or not name.isidentifier():
            continue
        if entry.get("callable"):
            namespace[name] = _Remote(candidate, name)
        elif "module" in entry:
            module = entry["module"]
            if module in TEST_MODULES:  # never an import by a name the program chose
                namespace[name] = importlib.import_module(module)
        else:
            namespace[name] = _plain(entry.get("value"))
    return namespace


def _plain(value):
    try:
        return decode(value)
    except Exception:  # noqa: BLE001 - not plain data: the test sees None
        return None


def _run_asserts(program: str, tests: list[str], limits: Limits) -> float:
    passed = 0
    try:
        with Candidate(program, limits) as candidate:
            if candidate.load_error is not None:
                return 0.0
            for test in tests:
                if time.monotonic() >= candidate.process.deadline:
                    break
                try:
                    exec(compile(test, "test.py", "exec"), _test_namespace(candidate, test))  # noqa: S102 - the dataset's tests
                except Exception:  # noqa: BLE001 - a failed assertion, a failed call, a test the answer broke
                    continue
                passed += 1
    except (CandidateError, OSError):  # it did not load, stopped answering, or broke the channel
        pass
    return passed / len(tests)


def _run_cases(program: str, cases: list[dict], limits: Limits) -> float:
    passed = 0
    for case in cases:
        result = run_untrusted(program, stdin=case.get("input", ""), wall_seconds=limits.wall_seconds,
                               cpu_seconds=limits.cpu_seconds, memory_mb=limits.memory_mb)
        if result.returncode == 0 and result.stdout.strip() == str(case.get("output", "")).strip():
            passed += 1
    return passed / len(cases)


def code_reward(completions, tests=None, test_cases=None, *, timeout: float = 10.0,
                memory_mb: int = 1024, processes: int | None = None, **columns) -> list[float]:
    """Fraction of the record's tests the completion's code passes, e.g. 1.0 for
    `code_reward(["def add(a, b):\\n    return a + b"], tests=[["assert add(1, 2) == 3"]])`
    (tests/unit/test_sandbox.py; it needs bubblewrap, so it is not a doctest).

    Up to `processes` programs (default: the cores available) run at once, each in its own
    sandbox; the tests of each are judged here on a thread of its own.
    """
    limits = Limits(wall_seconds=timeout, cpu_seconds=max(1, int(timeout)), memory_mb=memory_mb)
    jobs = []
    for i, completion in enumerate(completions):
        asserts = tests[i] if tests else None
        cases = test_cases[i] if test_cases else None
        if isinstance(cases, str):
            try:
                cases = json.loads(cases)
            except ValueError as exc:
                raise ValueError(f"code: record {i}: test_cases is not JSON: {exc}") from None
        if not asserts and not cases:
            raise ValueError(f"code: record {i} has no tests (a 'tests' list of asserts or 'test_cases')")
        jobs.append((extract_code(completion), list(asserts) if asserts else None, list(cases or [])))

    def score(job) -> float:
        program, asserts, cases = job
        return _run_asserts(program, asserts, limits) if asserts else _run_cases(program, cases, limits)

    workers = min(len(jobs), processes or default_processes())
    if workers <= 1:
        return [score(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="posttrain-code") as pool:
        return list(pool.map(score, jobs))


def unreadable_truth(record: dict) -> str | None:
    """Why `code` cannot score the record (None: it can): it needs a `tests` list of asserts or
    `test_cases` (a list, or its JSON)."""
    cases = record.get("test_cases")
    if isinstance(cases, str):
        try:
            cases = json.loads(cases)
        except ValueError as exc:
            return f"test_cases is not JSON: {exc}"
    if not record.get("tests") and not cases:
        return "no tests (a 'tests' list of asserts or 'test_cases')"
    return None


code_reward.unreadable_truth = unreadable_truth
