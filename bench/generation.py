"""posttrain's generation (posttrain/sampling.py) against a plain `model.generate` loop, side by side.

    python bench/generation.py                            # trains the model first (~2 min on 2 cores)
    python bench/generation.py --model runs/quickstart-pipeline/sft/final --rounds 5

The workload is the quickstart's: its 500 held-out arithmetic problems, at most 48 new tokens,
128 prompts per batch, on the model the quickstart's SFT stage writes (here trained for 400
steps unless --model names one), once greedy (the quickstart's evaluation) and once with 4
samples per prompt at temperature 1 (its on-policy DPO pairs, and any eval with n: 4).

The plain loop is what a user writes: the prompts in their order, 128 per `model.generate`
call, `num_return_sequences=4`. posttrain's loop differs in how it does the same work: prompts
sorted by length (less padding), tokenised once, prefilled once per prompt however many samples
it gets, finished rows leaving the batch, and a cache written in place instead of grown by
concatenation. Both use the same threads (printed). Tokens are the generated ones up to and
including the end token; tokens per second are medians over rounds, the two loops alternating
within each round. Greedy outputs must be identical (checked, and the bench fails otherwise).

Only ratios measured side by side in this one run are meaningful; absolute times are not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import torch  # noqa: E402

from posttrain import sampling  # noqa: E402
from posttrain.tasks import generate  # noqa: E402
from posttrain.threads import configure_threads  # noqa: E402

RECIPE = """\
extends: {sft}
trainer: {{max_steps: {steps}, save_strategy: "no", disable_tqdm: true, logging_steps: 1000}}
eval: null
run: {{name: bench-generation, dir: {dir}}}
"""


def train_model(steps: int, directory: Path) -> str:
    """The quickstart's SFT recipe, cut to `steps` steps."""
    from posttrain.recipe import load_run
    from posttrain.runs import run_recipe

    sft = Path(__file__).resolve().parent.parent / "recipes" / "quickstart" / "sft.yaml"
    path = directory / "recipe.yaml"
    path.write_text(RECIPE.format(sft=sft, steps=steps, dir=directory))
    return run_recipe(load_run(path))["run_dir"] + "/final"


def plain_loop(model, tokenizer, prompts, *, n: int, temperature: float, batch_size: int, max_new_tokens: int,
               stops: set[int]):
    """A plain loop: prompts in their order, model.generate per batch; (answers, generated tokens)."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    tokenizer.padding_side = "left"
    sampling_args = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    answers, tokens = [], 0
    for start in range(0, len(texts), batch_size):
        inputs = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, num_return_sequences=n,
                                 pad_token_id=tokenizer.pad_token_id, **sampling_args)
        rows = out[:, inputs["input_ids"].shape[1]:].tolist()
        tokens += sum(sampling._length(row, stops, tokenizer.pad_token_id) for row in rows)
        decoded = tokenizer.batch_decode(rows, skip_special_tokens=True)
        answers += [decoded[i * n:(i + 1) * n] for i in range(len(decoded) // n)]
    return answers, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a model directory (default: train the quickstart's SFT for --steps)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    threads = configure_threads()
    with tempfile.TemporaryDirectory() as scratch:
        path = args.model or train_model(args.steps, Path(scratch))
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    model.eval()
    prompts = [r["prompt"] for r in generate("arithmetic", args.problems, "heldout", 0)]
    stops = sampling._stop_ids(model, tokenizer)
    settings = dict(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)

    print(f"model {args.model or f'quickstart SFT, {args.steps} steps'}; {args.problems} problems; "
          f"{threads} threads; {args.batch_size} prompts per batch; at most {args.max_new_tokens} new tokens; "
          f"medians of {args.rounds} rounds")
    print("| workload | plain generate, tokens/s | posttrain, tokens/s | ratio |")
    print("|---|---|---|---|")
    failed = False
    for label, n, temperature in (("greedy, 1 per prompt", 1, 0.0), ("sampled, 4 per prompt", 4, 1.0)):
        rates: dict[str, list[float]] = {"plain": [], "posttrain": []}
        for _ in range(args.rounds):
            torch.manual_seed(0)
            start = time.perf_counter()
            plain, tokens = plain_loop(model, tokenizer, prompts, n=n, temperature=temperature, stops=stops, **settings)
            rates["plain"].append(tokens / (time.perf_counter() - start))
            stats: dict = {}
            start = time.perf_counter()
            ours = sampling.generate_answers(model, tokenizer, prompts, n=n, temperature=temperature, seed=0,
                                             stats=stats, **settings)
            rates["posttrain"].append(stats["generated_tokens"] / (time.perf_counter() - start))
            if n == 1 and (ours != plain or stats["generated_tokens"] != tokens):
                failed = True
        a, b = statistics.median(rates["plain"]), statistics.median(rates["posttrain"])
        print(f"| {label} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
    print("greedy outputs: " + ("DIFFERENT from the plain loop's" if failed else
                                f"identical to the plain loop's on all {len(prompts)} problems"))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
