"""What issue 29's defences cost the rewards: each reward's verifications per second with
posttrain as it is against posttrain at an earlier commit (default: the one before the
defences), measured side by side in one run.

    python bench/safety_cost.py                        # ~4 minutes on 2 CPU cores
    python bench/safety_cost.py --before 2d637fe --rounds 5 --only numeric,math

For each reward, each round runs the earlier and the current code in fresh child processes
(alternating which goes first), each warmed, then timed on the same inputs (bench/rewards.py's:
GSM8K-style completions for numeric, answers in LaTeX and plain forms for math, IFEval
instructions for ifeval); printed as medians with the lowest and highest round, and the
median of the per-round ratios current / earlier. reasoning_gym is measured on countdown (its
scorer evaluates answers: now screened and scored in the sandbox, one fork per answer) and on
chain_sum (its scorer compares text: bounded workers, before and after); the line says what a
sandboxed answer costs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

CHILD = r"""
import json, logging, random, sys, time
sys.path.insert(0, sys.argv[1])  # bench/, for the inputs
logging.disable(logging.WARNING)
from rewards import ifeval_inputs, math_inputs, numeric_inputs
from posttrain.rewards import build_reward
name, n, seed = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def gym_inputs(dataset):
    import reasoning_gym
    entries = list(reasoning_gym.create_dataset(dataset, seed=seed, size=n))
    rng = random.Random(seed)
    completions = [f"<answer>{e['answer'] if rng.random() < 0.5 else e['answer'] + ' + 1'}</answer>" for e in entries]
    truths = [json.dumps({"dataset": dataset, "options": {}, "entry": e}) for e in entries]
    return completions, truths, {}

makers = {"numeric": numeric_inputs, "math": math_inputs, "ifeval": ifeval_inputs,
          "gym:countdown": lambda n, r: gym_inputs("countdown"), "gym:chain_sum": lambda n, r: gym_inputs("chain_sum")}
completions, golds, columns = makers[name](n, random.Random(seed))
reward = build_reward("reasoning_gym" if name.startswith("gym:") else name, {})
kwargs = dict(columns, **({"ground_truth": golds} if golds is not None else {}))
reward(completions[:8], **{k: v[:8] for k, v in kwargs.items()})  # warm: workers, imports, a sandbox
start = time.perf_counter()
reward(completions, **kwargs)
print(json.dumps(n / (time.perf_counter() - start)))
"""

CASES = {"numeric": 20000, "math": 2000, "ifeval": 3000, "gym:chain_sum": 400, "gym:countdown": 400}


def measure(tree: str, name: str, n: int, seed: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"))
    done = subprocess.run([sys.executable, "-c", CHILD, HERE, name, str(n), str(seed)], capture_output=True,
                          text=True, env=env, cwd=tree, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"{name} in {tree}: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    sys.path.insert(0, HERE)
    from rewards import cpu_name

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="2d637fe", help="the earlier commit (default: before issue 29)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="", help="comma-separated: numeric, math, ifeval, gym:countdown, gym:chain_sum")
    args = parser.parse_args()
    only = {x for x in args.only.split(",") if x}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores; earlier: {args.before}, current: {head} (+ working tree)\n")
    print(f"{'reward':16s} {'earlier /s':>22s} {'current /s':>22s}  current / earlier")
    with tempfile.TemporaryDirectory(prefix="posttrain-bench-") as temp:
        earlier = os.path.join(temp, "earlier")
        subprocess.run(["git", "worktree", "add", "--detach", earlier, args.before], cwd=REPO, check=True,
                       capture_output=True)
        try:
            for name, n in CASES.items():
                if only and name not in only:
                    continue
                rates = {"earlier": [], "current": []}
                for r in range(args.rounds):
                    order = [("earlier", earlier), ("current", REPO)]
                    for label, tree in (order if r % 2 == 0 else order[::-1]):
                        rates[label].append(measure(tree, name, n, r))
                ratios = [c / e for e, c in zip(rates["earlier"], rates["current"])]
                show = lambda v: f"{statistics.median(v):>9,.0f} [{min(v):,.0f}-{max(v):,.0f}]"  # noqa: E731
                line = f"{name:16s} {show(rates['earlier']):>22s} {show(rates['current']):>22s}  " \
                       f"{statistics.median(ratios):.2f}x [{min(ratios):.2f} - {max(ratios):.2f}]"
                if name == "gym:countdown":
                    per = 1000 / statistics.median(rates["current"]) - 1000 / statistics.median(rates["earlier"])
                    line += f"  (+{per:.1f} ms per answer in the sandbox)"
                print(line, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", earlier], cwd=REPO, capture_output=True)


if __name__ == "__main__":
    main()
