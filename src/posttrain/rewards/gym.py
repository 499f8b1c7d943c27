"""`reasoning_gym`: a reasoning-gym record scored by its dataset's own `score_answer`.

The record's `ground_truth` (tasks/gym.py) holds the dataset's name, its options and the entry.
The answer is the completion's final answer (an `<answer>` tag, `Answer:` line, `\\boxed{}`, as
rewards/answers.py finds them); reasoning-gym's score (0 to 1, partial credit where the dataset
gives it) is the reward. Each answer gets `timeout` seconds; one that runs past it, or raises,
scores 0.

Some datasets' scorers evaluate the answer as code (`eval`, sympy's `parse_expr`): EVALUATING,
found by an audit (rewards/gym_audit.py, kept as a test) that feeds every dataset's scorer marked
answers and watches for them to be compiled. For those:
- the answer is screened first (`inert`): where the scorer calls `eval`, only an answer that is
  not Python (eval raises before running anything) or is a plain literal reaches it; where it
  calls `parse_expr`, only numbers, operators, brackets, single letters and the elementary
  functions' names do. Anything else scores 0 without being scored: no answer can run code that
  chooses its own score;
- the scorer runs in the bubblewrap sandbox (sandbox.Server): one sandboxed process that has
  imported reasoning-gym forks a fresh child per answer, which scores it and is killed with
  everything it started; nothing it did survives into the next answer's scoring, and the score
  crosses back as a JSON number. Where the sandbox cannot run, these datasets are refused at
  validation (`check_gym_scoring`).
The other datasets only compare the answer as text and run in bounded worker processes
(rewards/bounded.py), whose replies are plain data.
"""

from __future__ import annotations

import ast
import io
import json
import os
import site
import sys
import threading
import time
import tokenize
from functools import lru_cache

from posttrain.rewards.answers import extract_final_answer, hedged
from posttrain.rewards.bounded import STARTUP_SECONDS, BoundedPool
from posttrain.rewards.numeric import completion_text
from posttrain.rewards.sandbox import CandidateError, Limits, Server, sandbox_problem

# Datasets whose scorer evaluates the answer, and how: "literal" (Python's eval of a list),
# "expression" (sympy's parse_expr). From the audit of reasoning-gym AUDITED_VERSION.
EVALUATING = {"binary_matrix": "literal", "n_queens": "literal", "spiral_matrix": "literal",
              "string_insertion": "literal", "countdown": "expression", "puzzle24": "expression",
              "simple_integration": "expression", "intermediate_integration": "expression",
              "polynomial_multiplication": "expression"}
AUDITED_VERSION = "0.1.25"

# What an answer to an "expression" dataset may name: single letters (variables, C, E, I) and
# the elementary functions; none of them turns numbers into text that could be evaluated.
EXPRESSION_NAMES = frozenset({"sin", "cos", "tan", "cot", "sec", "csc", "asin", "acos", "atan", "acot", "sinh",
                              "cosh", "tanh", "asinh", "acosh", "atanh", "exp", "log", "ln", "sqrt", "pi", "oo",
                              "Abs", "abs", "Integral"})
# What an answer to a "literal" dataset may be, as Python: constants, containers of them, and bare
# names (a name is looked up, never called: `ABC` is a NameError, the scorer's own text compare
# has already read it as text). No call, attribute, subscript, operator or comprehension.
_LITERAL_NODES = (ast.Expression, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.Name, ast.Load,
                  ast.USub, ast.UAdd)
EXPRESSION_OPS = frozenset({"+", "-", "*", "/", "**", "^", "(", ")", ",", "%", "//"})


def inert(kind: str, answer: str | None) -> bool:
    """Whether `answer` may be given to a scorer that evaluates it (`kind`: "literal" or
    "expression", as EVALUATING says).

    >>> inert("literal", "1 0\\n0 1"), inert("literal", "[[1, 0], [0, 1]]"), inert("literal", "__import__('os')")
    (True, True, False)
    >>> inert("literal", "ABCD"), inert("literal", "['a', -1]"), inert("literal", "[x.y]"), inert("literal", "9**9**9")
    (True, True, False, False)
    >>> inert("expression", "x**3/3 + sin(x) + C"), inert("expression", "exec(chr(49))"), inert("expression", "x.y")
    (True, False, False)
    """
    if answer is None:
        return True
    if kind == "literal":  # eval(answer): harmless when it is not Python, or only data and names
        source = answer.lstrip(" \t")
        try:
            tree = compile(source, "<answer>", "eval", ast.PyCF_ONLY_AST)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            return True  # eval raises before it runs anything
        try:
            return all(isinstance(node, _LITERAL_NODES) or (isinstance(node, ast.UnaryOp) and
                       isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant))
                       for node in ast.walk(tree))
        except RecursionError:
            return False
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(answer).readline))
    except (tokenize.TokenError, SyntaxError, ValueError, RecursionError):
        return False
    for token in tokens:
        if token.type in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if token.type == tokenize.NAME and (token.string in EXPRESSION_NAMES or
                                            (len(token.string) == 1 and token.string.isascii() and token.string.isalpha())):
            continue
        if token.type == tokenize.OP and token.string in EXPRESSION_OPS:
            continue
        return False
    return True


@lru_cache(maxsize=64)
def _scorer(name: str, options: str):
    import reasoning_gym

    return reasoning_gym.create_dataset(name, seed=0, size=1, **json.loads(options)).score_answer


def score_one(name: str, options: str, answer: str | None, entry: dict) -> float:
    """reasoning-gym's score for one answer (runs in a worker)."""
    return float(_scorer(name, options)(answer, entry))


@lru_cache(maxsize=8)
def _pool(seconds: float, processes: int | None) -> BoundedPool:
    return BoundedPool(seconds, processes)


# ----------------------------------------------------------------------------- the sandboxed scorer

# Runs inside the sandbox (trusted source; the answers it scores are not). sys.argv: the request
# and response descriptors. It answers {"ready": true} once reasoning-gym is imported, then one
# {"scores": [...]} per {"items": [[name, options, answer, entry], ...], "seconds": s}.
SERVER = r'''
import ctypes, json, math, os, resource, select, signal, sys, time
requests = os.fdopen(int(sys.argv[1]), "r", encoding="utf-8")
responses = os.fdopen(int(sys.argv[2]), "w", encoding="utf-8")
try:  # PR_SET_DUMPABLE 0: a child cannot open this process's memory
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
except Exception:
    pass
import reasoning_gym
scorers = {}

def scorer(name, options):
    if (name, options) not in scorers:
        scorers[name, options] = reasoning_gym.create_dataset(name, seed=0, size=1, **json.loads(options)).score_answer
    return scorers[name, options]

def sweep():
    """Kill every process of the sandbox but bwrap (pid 1) and this one: whatever an answer left."""
    for _ in range(200):
        others = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, os.getpid())]
        if not others:
            return
        for pid in others:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        time.sleep(0.001)

def score(name, options, answer, entry, seconds):
    try:
        fn = scorer(name, options)
    except Exception:
        return None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = b"null"
        try:
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, write)
            os.closerange(write + 1, 4096)
            limit = int(seconds) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (limit, limit))
            value = float(fn(answer, entry))
            out = json.dumps(value if math.isfinite(value) else None).encode()
        except BaseException:
            pass
        try:
            os.write(write, out)
        finally:
            os._exit(0)
    os.close(write)
    data, deadline = b"", time.monotonic() + seconds
    while len(data) < 64:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([read], [], [], remaining)[0]:
            break
        chunk = os.read(read, 64)
        if not chunk:
            break
        data += chunk
    os.close(read)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    sweep()
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return float(value) if type(value) in (int, float) and 0 <= value <= 1 else None

responses.write(json.dumps({"ready": True}) + "\n")
responses.flush()
for line in requests:
    try:
        request = json.loads(line)
        scores = [score(*item, request["seconds"]) for item in request["items"]]
    except Exception:
        scores = None
    responses.write(json.dumps({"scores": scores}) + "\n")
    responses.flush()
'''


def _library_paths() -> tuple[str, ...]:
    """Where reasoning-gym and its dependencies are installed: mounted read-only for the server."""
    paths = set(site.getsitepackages())
    paths |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    import reasoning_gym

    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(reasoning_gym.__file__))))
    return tuple(sorted(os.path.realpath(p) for p in paths if os.path.isdir(p)))


class SandboxedScorer:
    """reasoning-gym's scorers in one sandboxed server (SERVER), started on first use and again
    whenever it stops; thread-safe (calls queue)."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self._lock = threading.Lock()
        self._server: Server | None = None

    def _start(self) -> Server:
        server = Server(SERVER, Limits(wall_seconds=1e9, cpu_seconds=1 << 30, memory_mb=4096, max_processes=64),
                        paths=_library_paths())
        try:
            hello = server._read(time.monotonic() + STARTUP_SECONDS)
            if hello != {"ready": True}:
                raise CandidateError("the scorer did not start")
        except BaseException:
            server.close()
            raise
        return server

    def _request(self, items: list) -> list[float | None] | None:
        try:
            if self._server is None or not self._server.alive():
                self._stop()
                self._server = self._start()
            reply = self._server.request({"items": items, "seconds": self.seconds},
                                         len(items) * (self.seconds + 1.0) + 10.0)
        except CandidateError:
            reply = None
        scores = reply.get("scores") if isinstance(reply, dict) else None
        if (not isinstance(scores, list) or len(scores) != len(items)
                or not all(s is None or (type(s) in (int, float) and 0 <= s <= 1) for s in scores)):
            self._stop()  # out of protocol: a fresh server for what follows
            return None
        return scores

    def map(self, items: list) -> list[float | None]:
        with self._lock:
            scores = self._request(items)
            if scores is None:  # the batch failed: each answer alone, so one cannot sink the rest
                scores = []
                for item in items:
                    one = self._request([item]) if len(items) > 1 else None
                    scores.append(one[0] if one else None)
            return scores

    def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def close(self) -> None:
        with self._lock:
            self._stop()


@lru_cache(maxsize=8)
def _sandboxed(seconds: float) -> SandboxedScorer:
    import atexit

    scorer = SandboxedScorer(seconds)
    atexit.register(scorer.close)  # its sandbox and cgroups go when this process ends normally
    return scorer


def _sandboxing(truth: dict) -> tuple[bool, str | None]:
    """(runs in the sandbox, screen kind) for a record: EVALUATING datasets, and `composite`,
    which hands each entry to the scorer of the dataset it came from."""
    name = truth["dataset"]
    if name == "composite":
        metadata = truth["entry"].get("metadata") if isinstance(truth["entry"].get("metadata"), dict) else {}
        return True, EVALUATING.get(metadata.get("source_dataset"), "expression")
    return name in EVALUATING, EVALUATING.get(name)


def check_gym_scoring(name: str) -> None:
    """Raises ValueError when reasoning-gym's dataset `name` cannot be scored safely here: its
    scorer evaluates answers and the sandbox cannot run, or the installed reasoning-gym is not
    the audited version and its scorer for `name` turns out (audited now) to evaluate answers
    that posttrain has no screen for."""
    from importlib.metadata import version as installed

    if name in EVALUATING or name == "composite":
        problem = sandbox_problem()
        if problem:
            what = "may hand answers to such a scorer" if name == "composite" else "evaluates the model's answer as code"
            raise ValueError(f"reasoning_gym/{name}: its scorer {what}, which posttrain runs only in the sandbox, "
                             f"and {problem}")
        return
    version = installed("reasoning-gym")  # its __version__ attribute lags behind its releases
    if version != AUDITED_VERSION:
        from posttrain.rewards.gym_audit import evaluating_datasets

        found = evaluating_datasets([name]).get(name)
        if found and not found.startswith("unaudited"):
            raise ValueError(f"reasoning_gym/{name}: in reasoning-gym {version} its scorer evaluates the model's "
                             f"answer ({found}), and posttrain (audited against {AUDITED_VERSION}) has no screen "
                             "for it: refused (docs/rewards.md, 'Verifiers and the model's text')")


def gym_reward(completions, ground_truth, *, timeout: float = 5.0, processes: int | None = None,
               **columns) -> list[float]:
    """reasoning-gym's own score of each completion's final answer.

    >>> import json
    >>> truth = json.dumps({"dataset": "chain_sum", "options": {}, "entry": {"question": "4 - 1 - 7 =",
    ...                     "answer": "-4", "metadata": {}}})
    >>> gym_reward(["4 - 1 = 3, 3 - 7 = -4\\nAnswer: -4", "Answer: 4"], [truth, truth])
    [1.0, 0.0]
    """
    plain, evaluating = [], []
    scores = [0.0] * len(completions)
    for i, (completion, truth) in enumerate(zip(completions, ground_truth)):
        truth = json.loads(truth) if isinstance(truth, str) else truth
        answer = extract_final_answer(completion_text(completion))
        item = (truth["dataset"], json.dumps(truth.get("options") or {}, sort_keys=True), answer, truth["entry"])
        sandboxed, kind = _sandboxing(truth)
        if hedged(answer, str(truth["entry"].get("answer", ""))):
            continue  # two or more different final values: 0 (answers.hedged)
        if not sandboxed:
            plain.append((i, item))
        elif kind is None or inert(kind, answer):
            evaluating.append((i, item))
        # else: an answer that would run as code scores 0, unscored
    if plain:
        results = _pool(float(timeout), processes).map(score_one, [item for _, item in plain])
        for (i, _), (status, value) in zip(plain, results):
            if status == "ok" and type(value) in (int, float):
                scores[i] = max(0.0, min(1.0, float(value)))
    if evaluating:
        if sandbox_problem():
            raise ValueError(f"reasoning_gym/{evaluating[0][1][0]}: its scorer evaluates answers as code, which "
                             f"runs only in the sandbox, and {sandbox_problem()}")
        results = _sandboxed(float(timeout)).map([list(item) for _, item in evaluating])
        for (i, _), value in zip(evaluating, results):
            scores[i] = float(value) if value is not None else 0.0
    return scores


def unreadable_truth(record: dict) -> str | None:
    """Why `reasoning_gym` cannot read the record's ground truth (None: it can): a JSON object
    with the dataset's name and its entry, as tasks/gym.py writes it; for a dataset whose scorer
    evaluates answers, a machine where the sandbox runs."""
    truth = record.get("ground_truth")
    try:
        truth = json.loads(truth) if isinstance(truth, str) else truth
        if not isinstance(truth, dict) or not isinstance(truth.get("dataset"), str) or not isinstance(truth.get("entry"), dict):
            raise ValueError
    except (ValueError, TypeError):
        return "ground truth is not a reasoning-gym record (JSON with 'dataset' and 'entry', as task: reasoning_gym/<name> writes)"
    if _sandboxing(truth)[0] and sandbox_problem():  # records from a file: the check tasks get at validation
        return (f"reasoning_gym/{truth['dataset']}: its scorer evaluates answers as code, which runs only in the "
                f"sandbox, and {sandbox_problem()}")
    return None


gym_reward.unreadable_truth = unreadable_truth
