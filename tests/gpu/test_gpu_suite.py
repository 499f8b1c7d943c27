"""On a CUDA GPU only (marked `gpu`; conftest skips them without CUDA). The checks behind
bench/gpu.sh, small enough for a test run: bf16 SFT on the GPU, greedy evaluation through vLLM
agreeing with posttrain's HF loop, GRPO with vLLM colocated, and the suite itself on its
cheapest sections. CPU-checkable parts are in tests/unit/test_gpu_suite_cpu.py."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
TINY = "{hidden_size: 128, num_layers: 4, num_heads: 4, intermediate_size: 512}"


def _needs(package: str):
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (bash bench/gpu.sh installs the GPU extras)")


def test_sft_trains_in_bf16_on_the_gpu(write_recipe, tmp_path):
    path = write_recipe(f"method: sft\nmodel: {{name_or_path: tiny, tiny: {TINY}}}\n"
                        "data: {train: [{task: arithmetic, n: 512}]}\nbatch: {per_device: 32, global: 32}\n"
                        "trainer: {max_steps: 20, learning_rate: 1.0e-3, logging_steps: 5, save_strategy: 'no'}\n"
                        f"run: {{dir: {tmp_path}}}\n")
    assert main(["run", str(path)]) == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    resolved = (run / "recipe.resolved.yaml").read_text()
    assert "bf16: true" in resolved
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < losses[0]


def test_vllm_greedy_answers_agree_with_posttrains_loop():
    _needs("vllm")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain import sampling
    from posttrain.recipe import TinyModelSpec
    from posttrain.tasks import generate
    from posttrain.tiny import tiny_model_path

    path = str(tiny_model_path(TinyModelSpec()))
    prompts = [r["prompt"] for r in generate("arithmetic", 64, "heldout", 0)]
    tokenizer = AutoTokenizer.from_pretrained(path)
    ours = sampling.generate_answers(AutoModelForCausalLM.from_pretrained(path).to("cuda"), tokenizer, prompts,
                                     max_new_tokens=32, batch_size=64)
    torch.cuda.empty_cache()
    theirs = sampling.generate_answers_vllm(path, tokenizer, prompts, max_new_tokens=32)
    same = sum(a == b for a, b in zip(ours, theirs))
    assert same >= 0.9 * len(prompts), f"{same} of {len(prompts)} identical"  # fp32 vs vLLM's kernels


def test_an_eval_block_with_engine_vllm_writes_the_usual_report(write_recipe, tmp_path):
    _needs("vllm")
    path = write_recipe(f"method: sft\nmodel: {{name_or_path: tiny, tiny: {TINY}}}\n"
                        "data: {train: [{task: arithmetic, n: 64}]}\n"
                        "trainer: {max_steps: 2, save_strategy: 'no'}\n"
                        "eval: {data: [{task: arithmetic, split: heldout, n: 32}], engine: vllm, max_new_tokens: 32}\n"
                        f"run: {{dir: {tmp_path}}}\n")
    assert main(["run", str(path)]) == 0
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["trained"]["samples"] == 32
    assert len((run / "eval" / "samples.jsonl").read_text().splitlines()) == 32


def test_grpo_with_vllm_colocated_trains(write_recipe, tmp_path):
    _needs("vllm")
    path = write_recipe(f"method: rlvr\nmodel: {{name_or_path: tiny, tiny: {TINY}}}\n"
                        "data: {train: [{task: arithmetic, n: 256}]}\nrewards: [{name: numeric}]\n"
                        "batch: {per_device: 16, global: 16}\n"
                        "trainer: {max_steps: 3, num_generations: 8, max_completion_length: 32, use_vllm: true, "
                        "vllm_mode: colocate, vllm_gpu_memory_utilization: 0.2, logging_steps: 1, save_strategy: 'no'}\n"
                        f"run: {{dir: {tmp_path}}}\n")
    assert main(["run", str(path)]) == 0


def test_the_suite_runs_its_cheapest_sections(tmp_path):
    out = tmp_path / "gpu-results.md"
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--sections", "qlora,dpo_zero3",
                             "--steps", "6", "--work", str(tmp_path / "work"), "--out", str(out)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["qlora"]["steps"] >= 3 and figures["dpo_zero3"]["steps"] >= 3


@pytest.mark.parametrize("teacher_device", ["cpu", "cuda:1"])
def test_a_distillation_teacher_on_a_device_of_its_own_trains_like_one_beside_the_student(write_recipe, tmp_path,
                                                                                        capsys, teacher_device):
    """The student on cuda:0, the teacher's layers on the CPU (one GPU) or on a second GPU: the
    losses match those of a teacher on cuda:0 (to bf16 rounding)."""
    import torch

    if teacher_device == "cuda:1" and torch.cuda.device_count() < 2:
        pytest.skip("needs a second GPU")
    losses = {}
    for name, device in (("beside", ""), ("apart", f", device: '{teacher_device}'")):
        path = write_recipe(f"method: distill\nmodel: {{name_or_path: tiny, tiny: {TINY}}}\n"
                            f"teacher: {{name_or_path: tiny, tiny: {TINY}{device}}}\n"
                            "data: {train: [{task: arithmetic, n: 64}]}\nbatch: {per_device: 8}\n"
                            "trainer: {max_steps: 3, logging_steps: 1, max_completion_length: 8, seed: 0, "
                            "save_strategy: 'no'}\n"
                            f"run: {{name: {name}, dir: {tmp_path}}}\n")
        assert main(["run", str(path)]) == 0
        losses[name] = [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                        if '"loss"' in line]
    assert f"teacher layers on {teacher_device}" in capsys.readouterr().out
    assert losses["apart"] == pytest.approx(losses["beside"], rel=0.05)
