"""Which reasoning-gym datasets evaluate the answer they score: the audit behind
rewards/gym.py's EVALUATING, run in a child interpreter of its own (`evaluating_datasets`).

Each dataset's `score_answer` is given answers that carry a marker in the shapes scorers parse
(a bare name, an expression, a list, a call, an assignment, the dataset's own answer with the
marker added), under a Python audit hook (PEP 578) that watches for the marker in any source
compiled, any code object executed, any module imported or file opened. A scorer that passes
the answer to eval, exec, compile, sympy's parse_expr or sympify (which compile it), or imports
by it, is caught, whatever library call it goes through. tests/unit/test_hostile.py runs the
audit over every dataset and fails when the result differs from EVALUATING.

    python -m posttrain.rewards.gym_audit [NAME ...]   # prints {name: "compile" | "exec" | ... | null}
"""

from __future__ import annotations

import json
import subprocess
import sys
import types

MARK = "qzpostaudit"
SHAPES = (MARK, f"1 + {MARK}", f"x**2 + {MARK}", f"[{MARK}]", f"({MARK})", f"{MARK}(1)", f"{MARK} = 1",
          f"1 {MARK} 2", f"{MARK} x", f"x {MARK}", f"{MARK}, 1", f"[['{MARK}']]", f"{MARK}.x")


def _codes(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _marked(value) -> bool:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    if isinstance(value, str):
        return MARK in value
    if isinstance(value, types.CodeType):
        return any(MARK in name for code in _codes(value)
                   for name in code.co_names + tuple(c for c in code.co_consts if isinstance(c, str)))
    return False


def _audit(names: list[str]) -> dict[str, str | None]:
    import signal
    import warnings

    warnings.filterwarnings("ignore")
    import reasoning_gym

    state = {"on": False, "hit": None}

    def hook(event, args):
        if state["on"] and state["hit"] is None and event in ("compile", "exec", "import", "open", "os.system",
                                                                "subprocess.Popen", "pickle.find_class"):
            if args and _marked(args[0]):
                state["hit"] = event

    sys.addaudithook(hook)

    def alarm(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, alarm)
    found = {}
    for name in names:
        state["hit"] = None
        try:
            signal.alarm(30)
            dataset = reasoning_gym.create_dataset(name, seed=0, size=1)
            entry = dataset[0]
            gold = str(entry.get("answer"))
            for answer in (*SHAPES, f"{gold} + {MARK}", gold.replace("1", MARK, 1), gold + MARK, f"{gold}\n{MARK}"):
                state["on"] = True
                try:
                    dataset.score_answer(answer, entry)
                except BaseException:  # noqa: BLE001 - a scorer that raises on odd answers
                    pass
                finally:
                    state["on"] = False
            found[name] = state["hit"]
        except BaseException as exc:  # noqa: BLE001 - a dataset that cannot be made without options
            found[name] = state["hit"] or f"unaudited: {type(exc).__name__}"
        finally:
            signal.alarm(0)
    return found


def evaluating_datasets(names: list[str] | None = None) -> dict[str, str | None]:
    """{dataset: what its scorer did with a marked answer ("compile", "exec", ...), None when it
    only treated it as data, "unaudited: ..." when the dataset could not be made}; in a child
    interpreter, as an audit hook cannot be removed once added."""
    done = subprocess.run([sys.executable, "-m", "posttrain.rewards.gym_audit", *(names or [])],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the reasoning-gym audit failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import reasoning_gym

    names = sys.argv[1:] or sorted(reasoning_gym.factory.DATASETS)
    out, sys.stdout = sys.stdout, sys.stderr  # what scorers print must not mix with the result
    found = _audit(names)
    out.write(json.dumps(found) + "\n")


if __name__ == "__main__":
    main()
