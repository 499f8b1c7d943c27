"""Test-time compute with a perfect verifier: is it the search or the PRM?

    python bench/test_time_oracle.py               # after posttrain run recipes/quickstart/test-time-compute.yaml
    python bench/test_time_oracle.py --questions 200 --budgets 1,4,16

The quickstart recipe's learned PRM makes best-of-N and PRM-guided search worse as N grows
(docs/verifiers.md). This runs the same strategies, with the same policy (the recipe's SFT
model), the same sampling settings and the same questions, once guided by that PRM and once by
the arithmetic step checker standing in for a perfect PRM: a partial solution scores 1 when
every step so far is the worked solution's and a declared answer is right, else 0. If search
and selection beat majority voting with the checker, the machinery works and the learned PRM
is what fails. Accuracy is printed with its 95% Wilson interval; one sampling seed.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from posttrain.evaluation.metrics import answer_key, majority_correct  # noqa: E402
from posttrain.evaluation.test_time import ModelPolicy, prm_scorer, search, wilson  # noqa: E402
from posttrain.rewards import build_reward  # noqa: E402
from posttrain.rewards.answers import extract_final_answer  # noqa: E402
from posttrain.tasks import arithmetic_judge, generate  # noqa: E402

RUN = "runs/quickstart-test-time-compute"


def checker_scorer(records: list[dict]):
    """A perfect PRM for arithmetic: 1 when every step so far is right, else 0."""
    by_question = {r["prompt"][-1]["content"]: r for r in records}
    numeric = build_reward("numeric")

    def score(prompts, steps_lists):
        out = []
        for prompt, steps in zip(prompts, steps_lists):
            record = by_question[prompt[-1]["content"]]
            ok, previous = True, []
            for step in steps:
                if extract_final_answer(step) is not None:
                    ok = ok and numeric([step], ground_truth=[record["ground_truth"]])[0] >= 1.0
                    continue
                verdict = arithmetic_judge(record, previous, step)
                ok = ok and verdict is not None and verdict[0] == "correct"
                previous.append(step)
            out.append(1.0 if ok else 0.0)
        return out

    return score


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--budgets", default="1,4,16")
    parser.add_argument("--run", default=RUN)
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]

    import platform

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.recipe import load_recipe

    torch.set_num_threads(os.cpu_count() or 1)
    spec = load_recipe("recipes/quickstart/test-time-compute.yaml").stage("prm").recipe.spec.eval
    test_time = spec.test_time
    records = generate("arithmetic", args.questions, "heldout", 0)
    policy_dir = f"{args.run}/sft/final"
    model, tokenizer = AutoModelForCausalLM.from_pretrained(policy_dir), AutoTokenizer.from_pretrained(policy_dir)
    prompts = [r["prompt"] for r in records]
    numeric = build_reward("numeric")

    def right(answers):
        return [s >= 1.0 for s in numeric(answers, ground_truth=[r["ground_truth"] for r in records])]

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; {len(records)} questions; "
          f"policy {policy_dir}; temperature {test_time.temperature}; beam width {test_time.beam_width}")
    policy = ModelPolicy(model, tokenizer, test_time, spec.max_new_tokens)
    samples = policy.sample(prompts, max(budgets))
    correct = [right([a[i] for a in samples]) for i in range(max(budgets))]  # [sample][question]
    correct = [[correct[i][q] for i in range(max(budgets))] for q in range(len(records))]
    keys = [[answer_key(a) for a in group] for group in samples]
    learned = prm_scorer(f"{args.run}/prm/final", test_time.aggregate)
    checker = checker_scorer(records)
    scores = {"learned PRM": [learned([p] * len(g), [[line for line in a.split("\n") if line.strip()] for a in g])
                              for p, g in zip(prompts, samples)],
              "checker": [checker([p] * len(g), [[line for line in a.split("\n") if line.strip()] for a in g])
                          for p, g in zip(prompts, samples)]}
    rows = []
    for budget in budgets:
        rows.append(("majority", "-", budget, sum(majority_correct(k[:budget], c[:budget])
                                                  for k, c in zip(keys, correct))))
        rows.append(("oracle pass@N", "-", budget, sum(any(c[:budget]) for c in correct)))
        for name, table in scores.items():
            best = [c[max(range(budget), key=lambda i: (s[i], -i))] for c, s in zip(correct, table)]
            rows.append(("best_of_n", name, budget, sum(best)))
        for name, scorer in (("learned PRM", learned), ("checker", checker)):
            results = search(prompts, policy, scorer, budget=budget, beam_width=test_time.beam_width,
                             strategy="beam_search", max_steps=test_time.max_steps)
            rows.append(("beam_search", name, budget, sum(right([r.answer for r in results]))))
    n = len(records)
    print("| strategy | verifier | N | accuracy | 95% interval |\n|---|---|---|---|---|")
    for strategy, verifier, budget, hits in rows:
        low, high = wilson(hits, n)
        print(f"| {strategy} | {verifier} | {budget} | {100 * hits / n:.1f}% | [{100 * low:.1f}, {100 * high:.1f}] |")


if __name__ == "__main__":
    main()
