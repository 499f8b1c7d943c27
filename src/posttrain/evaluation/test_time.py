"""Test-time compute curves (Snell et al., arXiv 2408.03314): for each strategy and budget N
(generations per question), accuracy and generated tokens; questions binned by difficulty; the
best strategy per bin and budget (the compute-optimal choice).

Strategies:
- `majority`: the most common final answer among N samples (maj@N);
- `best_of_n`: the sample the verifier scores highest;
- `weighted_majority`: votes weighted by the verifier's scores;
- `beam_search`: N candidate steps per level, scored by the PRM; the N/M best are kept and each
  is continued by M sampled steps (M = beam_width, or N when N < M); a partial solution sampled
  twice is searched once (its tokens still count);
- `lookahead`: beam search, each candidate scored after `lookahead` more greedy steps (their
  tokens are generated, so they count);
- `dvts`: diverse verifier tree search: N/M independent subtrees, each keeping its best step;
- the oracle ceiling, pass@N: any of the N samples correct.

The sampling strategies read the first N of max(budgets) samples, so the budgets are nested.
Search ends a beam when a step declares a final answer, and picks the finished beam the PRM
scores highest. Generated tokens are counted per question: every sample's tokens; for search
every sampled step (the kept and the pruned) and every lookahead step, each counted as the text
it keeps (the step's line, and an answer line that follows it), which is what an engine stopping
at the step separator generates. Scoring by the verifier is not counted.

Difficulty is the policy's own pass rate over its max(budgets) samples (Snell et al.'s oracle
difficulty): questions sorted from the highest pass rate to the lowest and cut into `bins` equal
parts, level 1 the easiest. The best strategy per bin is chosen on the same questions it is
reported on (in-sample, as a description of the curves, not a held-out selection).

The search is written against two small interfaces, so it is tested against brute force on
hand-built trees (tests/unit/test_test_time.py): a `Policy` samples answers and next steps; a
`scorer(prompts, steps_lists) -> scores` rates partial solutions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from posttrain.evaluation.metrics import answer_key, majority_correct
from posttrain.rewards.answers import extract_final_answer
from posttrain.rewards.model_reward import aggregate_scores

SAMPLING = ("majority", "best_of_n", "weighted_majority")
SEARCH = ("beam_search", "lookahead", "dvts")


class Policy(Protocol):
    def sample(self, prompts: list, n: int) -> list[list[str]]: ...  # n whole answers per prompt

    def steps(self, prompts: list, prefixes: list[list[str]], n: int, greedy: bool = False) -> list[list[str]]: ...

    def tokens(self, text: str) -> int: ...


def next_step(generated: str) -> str:
    """The step a continuation writes: its first line, and the line after it when that line
    (only) declares the final answer. '' when the first line is empty."""
    lines = generated.split("\n")
    first = lines[0].strip()
    if not first:
        return ""
    if extract_final_answer(first) is None and len(lines) > 1 and lines[1].strip() \
            and extract_final_answer(lines[1]) is not None:
        return first + "\n" + lines[1].strip()
    return first


def finished(step: str) -> bool:
    return any(extract_final_answer(line) is not None for line in step.split("\n") if line.strip())


def step_lines(steps: list[str]) -> list[str]:
    return [line for step in steps for line in step.split("\n") if line.strip()]


@dataclass
class Beam:
    steps: list[str]
    subtree: int
    score: float = 0.0
    order: int = 0  # creation order: ties go to the earliest

    @property
    def done(self) -> bool:
        return bool(self.steps) and finished(self.steps[-1])

    @property
    def text(self) -> str:
        return "\n".join(self.steps)


@dataclass
class SearchResult:
    answer: str  # the chosen completion ('' when no beam finished and none had a step)
    tokens: int
    finished: int  # beams that reached a final answer
    candidates: list[tuple[str, float]] = field(default_factory=list)  # finished beams and scores


def search(prompts: list, policy: Policy, scorer: Callable, *, budget: int, beam_width: int, strategy: str,
           max_steps: int, lookahead: int = 0) -> list[SearchResult]:
    """PRM-guided search for each prompt at one budget. `scorer(prompts, steps_lists)` rates
    partial solutions (one float each, higher is better)."""
    width = min(beam_width, budget)
    keep = max(1, budget // width)  # beams kept per level (beam search); subtrees (dvts)
    roll = lookahead if strategy == "lookahead" else 0
    counter = [0]

    seen: list[set] = [set() for _ in prompts]

    def add(i, beams, steps, subtree):
        """A new candidate, unless the question already has this partial solution (in this
        subtree, for dvts): a duplicate was generated (its tokens count) but is not searched twice."""
        key = (subtree, tuple(steps)) if strategy == "dvts" else tuple(steps)
        if key in seen[i]:
            return
        seen[i].add(key)
        counter[0] += 1
        beams.append(Beam(steps, subtree, order=counter[0]))

    tokens = [0] * len(prompts)
    pools: list[list[Beam]] = [[] for _ in prompts]
    # Level 1: N first steps from the empty answer (dvts: subtree j holds the j-th M of them).
    firsts = policy.steps(prompts, [[] for _ in prompts], budget)
    active: list[list[Beam]] = []
    for i, group in enumerate(firsts):
        beams = []
        for j, generated in enumerate(group):
            step = next_step(generated)
            tokens[i] += policy.tokens(step) if step else 0
            if step:
                add(i, beams, [step], j // width if strategy == "dvts" else 0)
        active.append(beams)
    for level in range(max_steps):
        # Score every candidate (after a greedy lookahead for `lookahead`).
        flat = [(i, b) for i, beams in enumerate(active) for b in beams]
        if not flat:
            break
        scored_steps = [list(b.steps) for _, b in flat]
        if roll:
            open_ = [k for k, (_, b) in enumerate(flat) if not b.done]
            for _ in range(roll):
                if not open_:
                    break
                more = policy.steps([prompts[flat[k][0]] for k in open_], [scored_steps[k] for k in open_], 1, greedy=True)
                still = []
                for k, (generated,) in zip(open_, more):
                    step = next_step(generated)
                    if not step:
                        continue
                    tokens[flat[k][0]] += policy.tokens(step)
                    scored_steps[k].append(step)
                    if not finished(step):
                        still.append(k)
                open_ = still
        scores = scorer([prompts[i] for i, _ in flat], [step_lines(s) for s in scored_steps])
        for (i, beam), score in zip(flat, scores):
            beam.score = float(score)
        survivors: list[list[Beam]] = []
        for i, beams in enumerate(active):
            pools[i] += [b for b in beams if b.done]
            open_beams = [b for b in beams if not b.done]
            if len(pools[i]) >= budget or level == max_steps - 1:
                open_beams = []
            ranked = sorted(open_beams, key=lambda b: (-b.score, b.order))
            if strategy == "dvts":
                kept = [next(b for b in ranked if b.subtree == t) for t in sorted({b.subtree for b in ranked})]
            else:
                kept = ranked[:keep]
            survivors.append(kept)
            if not kept and not pools[i] and beams:  # nothing finished: the best unfinished beam answers
                pools[i] = [min(beams, key=lambda b: (-b.score, b.order))]
        expand = [(i, b) for i, kept in enumerate(survivors) for b in kept]
        if not expand:
            break
        samples = policy.steps([prompts[i] for i, _ in expand], [b.steps for _, b in expand], width)
        active = [[] for _ in prompts]
        for (i, parent), group in zip(expand, samples):
            for generated in group:
                step = next_step(generated)
                if not step:
                    continue
                tokens[i] += policy.tokens(step)
                add(i, active[i], parent.steps + [step], parent.subtree)
    results = []
    for i, pool in enumerate(pools):
        if not pool:
            results.append(SearchResult("", tokens[i], 0))
            continue
        best = min(pool, key=lambda b: (-b.score, b.order))
        results.append(SearchResult(best.text, tokens[i], sum(b.done for b in pool),
                                    [(b.text, b.score) for b in pool if b.done]))
    return results


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default).

    >>> [round(x, 3) for x in wilson(50, 100)]
    [0.404, 0.596]
    """
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def ranking_auc(correct: list[list[bool]], scores: list[list[float]]) -> float | None:
    """The chance that the verifier scores a correct sample above an incorrect one of the same
    question (ties count half), over every such pair; None when no question has both. 0.5 is a
    verifier that cannot tell them apart where it matters for choosing.

    >>> ranking_auc([[True, False, False], [True, True]], [[0.9, 0.1, 0.9], [0.2, 0.3]])
    0.75
    """
    above = pairs = 0.0
    for c, s in zip(correct, scores):
        for x in (v for v, ok in zip(s, c) if ok):
            for y in (v for v, ok in zip(s, c) if not ok):
                pairs += 1
                above += 1.0 if x > y else 0.5 if x == y else 0.0
    return above / pairs if pairs else None


def difficulty_bins(pass_rates: list[float], bins: int) -> list[int]:
    """Each question's level, 1 (easiest) to `bins`: sorted by pass rate, highest first (ties in
    question order), cut into equal parts.

    >>> difficulty_bins([0.0, 1.0, 0.5, 0.25], 2)
    [2, 1, 1, 2]
    """
    order = sorted(range(len(pass_rates)), key=lambda i: (-pass_rates[i], i))
    levels = [0] * len(pass_rates)
    for rank, i in enumerate(order):
        levels[i] = min(bins, rank * bins // max(1, len(order)) + 1)
    return levels


def sampling_outcomes(correct: list[bool], keys: list, selector: list[float] | None, tokens: list[int],
                      budget: int, strategies) -> dict[str, tuple[bool, int]]:
    """(correct, tokens) of each sampling strategy, and the oracle, on one question's first
    `budget` samples."""
    c, k, t = correct[:budget], keys[:budget], sum(tokens[:budget])
    out = {"oracle": (any(c), t)}
    if "majority" in strategies:
        out["majority"] = (majority_correct(k, c), t)
    if selector is not None:
        s = selector[:budget]
        if "best_of_n" in strategies:
            best = max(range(len(s)), key=lambda i: (s[i], -i))
            out["best_of_n"] = (c[best], t)
        if "weighted_majority" in strategies:
            out["weighted_majority"] = (majority_correct(k, c, s), t)
    return out


def summarise(outcomes: dict, levels: list[int], budgets: list[int], bins: int) -> dict:
    """outcomes[strategy][budget] = [(correct, tokens) per question] -> the report."""
    n = len(levels)
    curves = {}
    for strategy, by_budget in outcomes.items():
        curves[strategy] = []
        for budget in budgets:
            rows = by_budget[budget]
            right = sum(c for c, _ in rows)
            low, high = wilson(right, n)
            curves[strategy].append({"budget": budget, "accuracy": right / n, "interval": [low, high],
                                     "correct": right, "questions": n,
                                     "tokens_per_question": sum(t for _, t in rows) / n})
    per_bin = []
    for level in range(1, bins + 1):
        members = [i for i, lv in enumerate(levels) if lv == level]
        if not members:
            continue
        entry = {"level": level, "questions": len(members), "by_budget": []}
        for budget in budgets:
            cells = {}
            for strategy, by_budget in outcomes.items():
                rows = [by_budget[budget][i] for i in members]
                cells[strategy] = {"accuracy": sum(c for c, _ in rows) / len(rows),
                                   "tokens_per_question": sum(t for _, t in rows) / len(rows)}
            chosen = [s for s in cells if s != "oracle"]
            best = max(chosen, key=lambda s: (cells[s]["accuracy"], -cells[s]["tokens_per_question"],
                                              -chosen.index(s))) if chosen else None
            entry["by_budget"].append({"budget": budget, "best": best, "strategies": cells})
        per_bin.append(entry)
    return {"curves": curves, "bins": per_bin}


def curves_over_seeds(runs: list[list[dict]]) -> dict:
    """The curves of one stage over a pipeline's seeds: `runs` holds, per seed, the rows of its
    test_time.jsonl (the same questions in the same order, each with its `outcomes`). Per
    strategy and budget, the accuracy over seeds and questions with its 95 % interval (the spread
    over questions and over seeds, evaluation/stats.py); and paired differences, on the same
    questions and seeds: each ranked strategy against majority voting at the same budget, and
    each strategy at its largest budget against its smallest.

    >>> row = lambda ok: {"prompt": "q", "outcomes": {"majority": {"1": ok, "4": True}}}
    >>> out = curves_over_seeds([[row(False), row(True)], [row(True), row(True)]])
    >>> [(p["budget"], p["accuracy"]) for p in out["curves"]["majority"]]
    [(1, 0.75), (4, 1.0)]
    >>> [(d["a"], d["b"], d["difference"]) for d in out["differences"]]
    [('majority@4', 'majority@1', 0.25)]
    """
    from posttrain.evaluation.stats import paired_difference

    prompts = [r["prompt"] for r in runs[0]]
    for rows in runs[1:]:
        if [r["prompt"] for r in rows] != prompts:
            raise ValueError("the seeds' test-time curves are over different questions; they cannot be paired")
    strategies = list(runs[0][0]["outcomes"])
    budgets = sorted(runs[0][0]["outcomes"][strategies[0]], key=int)

    def scores(strategy, budget):
        return [[float(r["outcomes"][strategy][budget]) for r in rows] for rows in runs]

    zeros = [[0.0] * len(prompts) for _ in runs]
    curves = {}
    for strategy in strategies:
        curves[strategy] = []
        for budget in budgets:
            cell = paired_difference(scores(strategy, budget), zeros)
            curves[strategy].append({"budget": int(budget), "accuracy": cell["difference"],
                                     "low": max(0.0, cell["low"]), "high": min(1.0, cell["high"]),  # a share
                                     "per_seed": cell["per_seed"]})
    differences = []
    if "majority" in strategies:
        for budget in budgets:
            for strategy in strategies:
                if strategy not in ("majority", "oracle") and int(budget) > 1:
                    differences.append({"a": f"{strategy}@{budget}", "b": f"majority@{budget}",
                                        **paired_difference(scores(strategy, budget), scores("majority", budget))})
    if len(budgets) > 1:
        for strategy in strategies:
            differences.append({"a": f"{strategy}@{budgets[-1]}", "b": f"{strategy}@{budgets[0]}",
                                **paired_difference(scores(strategy, budgets[-1]), scores(strategy, budgets[0]))})
    return {"seeds": len(runs), "questions": len(prompts), "budgets": [int(b) for b in budgets],
            "curves": curves, "differences": differences}


def curves_over_seeds_markdown(stage: str, result: dict) -> list[str]:
    """Markdown lines for curves_over_seeds' result."""
    from posttrain.evaluation.stats import differences_table

    budgets = result["budgets"]
    lines = [f"## Test-time compute of {stage} over {result['seeds']} seeds", "",
             f"Accuracy (mean over seeds and {result['questions']} questions, [95 % interval]):", "",
             "| strategy | " + " | ".join(f"N={b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for strategy, points in result["curves"].items():
        name = "oracle pass@N (ceiling)" if strategy == "oracle" else strategy
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * p['accuracy']:.1f} [{100 * p['low']:.1f}, {100 * p['high']:.1f}]" for p in points) + " |")
    aucs = [a for a in result.get("verifier_auc_per_seed") or [] if a is not None]
    if aucs:
        lines += ["", "The verifier ranks a correct sample above an incorrect one of the same question "
                  + ", ".join(f"{100 * a:.1f}%" for a in aucs) + " of the time, per seed (50 %: it cannot tell them apart)."]
    return lines + ["", *differences_table(result["differences"]),
                    "", "Intervals count the spread over questions and over seeds (posttrain/evaluation/stats.py), "
                    "an accuracy's interval clipped to [0, 100].", ""]


def report_markdown(report: dict) -> str:
    budgets = report["budgets"]
    lines = ["# Test-time compute", "",
             f"{report['questions']} questions; policy {report['policy']}; PRM {report.get('prm') or '-'}; "
             f"verifier {report.get('verifier') or '-'}; temperature {report['temperature']}; "
             f"beam width {report['beam_width']}, lookahead {report['lookahead']}.", "",
             "Accuracy (95% Wilson interval) and generated tokens per question:", "",
             "| strategy | " + " | ".join(f"N={b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    for strategy, points in report["curves"].items():
        cells = [f"{100 * p['accuracy']:.1f}% [{100 * p['interval'][0]:.1f}, {100 * p['interval'][1]:.1f}]"
                 f" · {p['tokens_per_question']:.0f} tok" for p in points]
        name = "oracle pass@N (ceiling)" if strategy == "oracle" else strategy
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report.get("verifier_auc_within_questions") is not None:
        lines += ["", f"The verifier ranks a correct sample above an incorrect one of the same question "
                      f"{100 * report['verifier_auc_within_questions']:.1f}% of the time (50%: it cannot tell them apart)."]
    lines += ["", "Best strategy per difficulty level (1: easiest, by the policy's own pass rate) and budget:", "",
              "| level | questions | " + " | ".join(f"N={b}" for b in budgets) + " |",
              "|---|---|" + "---|" * len(budgets)]
    for entry in report["bins"]:
        cells = []
        for cell in entry["by_budget"]:
            best = cell["best"]
            cells.append(f"{best} ({100 * cell['strategies'][best]['accuracy']:.0f}%)" if best else "-")
        lines.append(f"| {entry['level']} | {entry['questions']} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time {report['seconds']:.0f} s ({report['hardware']}).", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Accuracy against generated tokens per question, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for strategy, points in report["curves"].items():
        xs = [max(p["tokens_per_question"], 1e-9) for p in points]
        ys = [100 * p["accuracy"] for p in points]
        style = {"linestyle": "--", "color": "grey"} if strategy == "oracle" else {}
        axis.plot(xs, ys, marker="o", label="oracle pass@N" if strategy == "oracle" else strategy, **style)
        for x, y, p in zip(xs, ys, points):
            axis.annotate(str(p["budget"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("generated tokens per question")
    axis.set_ylabel("accuracy (%)")
    axis.set_title(f"Test-time compute, {report['questions']} questions (labels: N)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ----------------------------------------------------------------------------- with real models


class ModelPolicy:
    """A causal LM through a generation engine (a model in memory runs posttrain's loop:
    sampling.as_engine)."""

    def __init__(self, model, tokenizer, spec, max_new_tokens: int, seed: int = 0):
        self.model, self.tokenizer, self.spec, self.max_new_tokens = model, tokenizer, spec, max_new_tokens
        self.seed = spec.seed if spec.seed is not None else seed
        self.calls = 0

    def _generate(self, prompts, n, max_new_tokens, greedy=False, prefixes=None):
        from posttrain.sampling import Sampling, as_engine

        self.calls += 1
        sampling = Sampling(max_new_tokens, 0.0 if greedy else self.spec.temperature, self.spec.top_p,
                            self.seed + self.calls)
        return as_engine(self.model, self.tokenizer, self.spec.batch_size).generate(
            prompts, n, sampling, prefixes, trim_unfinished=prefixes is not None)

    def sample(self, prompts, n):
        return self._generate(prompts, n, self.max_new_tokens)

    def steps(self, prompts, prefixes, n, greedy=False):
        return self._generate(prompts, n, self.spec.step_tokens, greedy=greedy,
                              prefixes=["".join(s + "\n" for s in p) for p in prefixes])

    def tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def prm_scorer(path: str, aggregate: str, device: str = "auto", batch_size: int = 16) -> Callable:
    """`scorer(prompts, steps_lists)` by the process reward model at `path`."""
    from posttrain.errors import UserError
    from posttrain.rewards.model_reward import load_verifier_model, step_scores

    model, tokenizer, kind, candidates = load_verifier_model(path, device)
    if kind != "process":
        raise UserError(f"eval.test_time.prm: {path} is a reward model of whole answers; search needs a process "
                        "reward model (method: prm)")

    def scorer(prompts, steps_lists):
        rated = step_scores(model, tokenizer, [{"prompt": p, "completions": s} for p, s in zip(prompts, steps_lists)],
                            {"separator": "\n", "max_length": 1024}, batch_size, candidates)
        return [aggregate_scores(r, aggregate) for r in rated]

    return scorer


def run_test_time(model, tokenizer, records: list[dict], eval_spec, *, prm: str | None, verifier, policy_name: str,
                  hardware: str, seed: int = 0) -> tuple[dict, list[dict]]:
    """The curves for `records` (task records), as `eval_spec.test_time` says: `prm` (a path)
    guides search, `verifier` (a reward reference) ranks whole answers; `seed` samples unless
    test_time.seed is set."""
    import time

    from posttrain.sampling import score_answers

    spec = eval_spec.test_time
    began = time.monotonic()
    policy = ModelPolicy(model, tokenizer, spec, eval_spec.max_new_tokens, seed)
    prompts = [r["prompt"] for r in records]
    top = max(spec.budgets)
    answers = policy.sample(prompts, top)
    scores = score_answers(eval_spec.reward, records, answers)
    correct = [[s >= 1.0 for s in sc] for sc in scores]
    keys = [[answer_key(a) for a in an] for an in answers]
    tokens = [[policy.tokens(a) for a in an] for an in answers]
    needs_verifier = [s for s in spec.strategies if s in ("best_of_n", "weighted_majority")]
    selectors = score_answers(verifier, records, answers) if verifier is not None and needs_verifier else None
    outcomes: dict[str, dict[int, list]] = {}
    for budget in spec.budgets:
        for i in range(len(records)):
            cells = sampling_outcomes(correct[i], keys[i], selectors[i] if selectors else None, tokens[i],
                                      budget, spec.strategies)
            for strategy, cell in cells.items():
                outcomes.setdefault(strategy, {}).setdefault(budget, []).append(cell)
    searched: dict[str, dict[int, list[SearchResult]]] = {}
    searches = [s for s in spec.strategies if s in SEARCH]
    if searches:
        scorer = prm_scorer(prm, spec.aggregate)
        for strategy in searches:
            for budget in spec.budgets:
                results = search(prompts, policy, scorer, budget=budget, beam_width=spec.beam_width,
                                 strategy=strategy, max_steps=spec.max_steps, lookahead=spec.lookahead)
                right = score_answers(eval_spec.reward, records, [[r.answer] for r in results])
                outcomes.setdefault(strategy, {})[budget] = [(s[0] >= 1.0, r.tokens) for s, r in zip(right, results)]
                searched.setdefault(strategy, {})[budget] = results
    ordered = {s: outcomes[s] for s in [*spec.strategies, "oracle"] if s in outcomes}
    pass_rates = [sum(c) / len(c) for c in correct]
    levels = difficulty_bins(pass_rates, spec.bins)
    report = {"questions": len(records), "budgets": spec.budgets, "strategies": spec.strategies,
              "policy": policy_name, "prm": prm, "verifier": verifier and verifier.label, "temperature": spec.temperature, "beam_width": spec.beam_width,
              "seed": policy.seed, "lookahead": spec.lookahead, "max_steps": spec.max_steps, "bins_by": "the policy's pass rate over "
              f"{top} samples", "verifier_auc_within_questions": ranking_auc(correct, selectors) if selectors else None,
              **summarise(ordered, levels, spec.budgets, spec.bins),
              "seconds": time.monotonic() - began, "hardware": hardware}
    rows = []
    for i, record in enumerate(records):
        row = {"prompt": record["prompt"], "ground_truth": record.get("ground_truth"), "level": levels[i],
               "pass_rate": pass_rates[i], "samples": answers[i], "tokens": tokens[i],
               **({"selector": selectors[i]} if selectors else {}),
               # each strategy's verdict on this question at each budget (what curves_over_seeds pairs)
               "outcomes": {strategy: {str(b): bool(by_budget[b][i][0]) for b in spec.budgets}
                            for strategy, by_budget in ordered.items()}}
        for strategy, by_budget in searched.items():
            row[strategy] = {str(b): {"answer": res[i].answer, "tokens": res[i].tokens} for b, res in by_budget.items()}
        rows.append(row)
    return report, rows


def write_test_time(directory, report: dict, rows: list[dict]) -> None:
    """test_time.json, test_time.md, test_time.png and test_time.jsonl (per question)."""
    from posttrain.rundir import write_atomic

    directory.path.mkdir(parents=True, exist_ok=True)
    write_atomic(directory.test_time, json.dumps(report, indent=2) + "\n")
    write_atomic(directory.test_time_markdown, report_markdown(report))
    write_atomic(directory.test_time_questions, "".join(json.dumps(r) + "\n" for r in rows))
    plot(report, directory.test_time_plot)
