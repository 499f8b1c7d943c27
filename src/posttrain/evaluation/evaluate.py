"""Sample answers for verifiable tasks, score them with the task's reward, and report pass@k,
maj@k, best-of-N and weighted majority, per dataset and overall.

The reward that scores here is the one RLVR trains with: what is trained on is what is scored.
Generation is posttrain's decoding loop over the transformers model, or vLLM (`eval.engine`;
posttrain/sampling.py); the samples and the report are the same either way.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.evaluation.metrics import answer_key, summarize
from posttrain.rundir import EvalDir, write_atomic
from posttrain.sampling import Engine, Sampling, score_answers


def evaluate_datasets(engine: Engine, datasets: dict[str, list[dict]], spec) -> tuple[dict, list[dict]]:
    """Score `datasets` ({label: task records}) as `spec` (the recipe's eval block) says, with
    answers from `engine` (sampling.make_engine: the one eval.engine chose)."""
    labels = [label for label, records in datasets.items() for _ in records]
    records = [r for rs in datasets.values() for r in rs]
    sampling = Sampling(spec.max_new_tokens, spec.temperature, spec.top_p, spec.seed)
    answers = engine.generate([r["prompt"] for r in records], spec.n, sampling, progress=_progress)
    scores = score_answers(spec.reward, records, answers)
    selectors = score_answers(spec.select_reward, records, answers) if spec.select_reward else [None] * len(records)
    groups = [{"correct": [s >= 1.0 for s in sc], "keys": [answer_key(a) for a in an], "selector": sel,
               "scores": sc} for sc, an, sel in zip(scores, answers, selectors)]
    ks = sorted(set(spec.k) | {1})

    def summary(chosen: list[int]) -> dict:
        picked = [groups[i] for i in chosen]
        result = summarize(picked, ks)
        result["mean_reward"] = sum(sum(g["scores"]) for g in picked) / result["samples"]
        figures = ifeval_part(spec.reward, [records[i] for i in chosen], [answers[i] for i in chosen])
        if figures:
            result["ifeval"] = figures
        return result

    report = summary(list(range(len(records))))
    if len(datasets) > 1:
        report["per_dataset"] = {label: summary([i for i, l in enumerate(labels) if l == label]) for label in datasets}
    samples = [{"dataset": label, "prompt": r["prompt"], "ground_truth": r.get("ground_truth"), "answers": an,
                "scores": sc, **({"selector": sel} if sel is not None else {})}
               for label, r, an, sc, sel in zip(labels, records, answers, scores, selectors)]
    return report, samples


def ifeval_part(reward, records: list[dict], answers: list[list[str]]) -> dict | None:
    """IFEval's prompt- and instruction-level figures, strict and loose (rewards/ifeval.py), over
    the records the ifeval verifier scores (first answer of each); None when there are none."""
    from posttrain.rewards.ifeval import ifeval_figures

    name = reward if isinstance(reward, str) else reward.name
    chosen = [i for i, r in enumerate(records) if name == "ifeval" or (name == "verifier" and r.get("verifier") == "ifeval")]
    if not chosen:
        return None
    figures = ifeval_figures([answers[i][0] for i in chosen], [records[i] for i in chosen])
    return {**figures, "prompts": len(chosen)}


def _progress(done: int, total: int) -> None:
    """A line per batch while answers are generated (minutes on a real model on CPU)."""
    print(f"posttrain: eval: {done}/{total} prompts answered", flush=True)


def write_samples(path: Path, samples: list[dict]) -> None:
    write_atomic(path, "".join(json.dumps(s) + "\n" for s in samples))


def write_report(outputs: EvalDir, report: dict, samples: list[dict]) -> None:
    """samples.jsonl, report.json and report.md in `outputs`."""
    outputs.path.mkdir(parents=True, exist_ok=True)
    write_samples(outputs.samples, samples)
    write_atomic(outputs.report, json.dumps(report, indent=2) + "\n")
    write_atomic(outputs.report_markdown, report_markdown(report))


_COLUMNS = ["accuracy", "pass@", "maj@", "best_of_", "weighted_maj@", "mean_reward"]


def report_markdown(report: dict) -> str:
    rows = [(label, report[key]) for label, key in (("before training", "baseline"),
                                                    ("after training", "trained"), ("model", "model"))
            if key in report]
    metrics = [m for m in rows[0][1] if any(m.startswith(c) for c in _COLUMNS)] if rows else []
    lines = ["# Evaluation", "", "| model | dataset | " + " | ".join(metrics) + " | samples |",
             "|---|---|" + "---|" * (len(metrics) + 1)]
    for label, result in rows:
        parts = [("all", result), *result.get("per_dataset", {}).items()]
        for dataset, r in parts:
            cells = " | ".join(f"{100 * r[m]:.1f}%" if m != "mean_reward" else f"{r[m]:.3f}" for m in metrics)
            lines.append(f"| {label} | {dataset} | {cells} | {r['correct']} / {r['samples']} correct |")
    for label, result in rows:
        for dataset, r in [("all", result), *result.get("per_dataset", {}).items()]:
            if "ifeval" in r:
                f = r["ifeval"]
                lines.append(f"\nIFEval ({label}, {dataset}, {f['prompts']} prompts): prompt-level strict "
                             f"{100 * f['prompt_strict']:.1f}%, instruction-level strict {100 * f['instruction_strict']:.1f}%, "
                             f"prompt-level loose {100 * f['prompt_loose']:.1f}%, instruction-level loose "
                             f"{100 * f['instruction_loose']:.1f}% (mean_reward is the mean per-prompt fraction)")
    if "change" in report:
        from posttrain.evaluation.stats import describe_difference

        change = report["change"]
        lines += ["", f"After minus before training, paired on the same {change['problems']} problems: "
                      f"{describe_difference(change)} (95 % interval over the problems; one seed)."]
    lines += ["", f"Reward `{report['reward']}`; {report['samples_per_prompt']} sample(s) per prompt, "
              f"temperature {report['temperature']}; at most {report['max_new_tokens']} new tokens.", ""]
    return "\n".join(lines)
