"""`trainer.push_to_hub`: posttrain, not the Trainer, pushes final/ and adapter/ with a model card;
an offline machine fails when the run starts, before anything trains. (Nothing here reaches the
real hub: this machine cannot, so the upload itself is not exercised by the tests.)"""

import time

import pytest
import yaml

from posttrain.cli import main
from posttrain.errors import RecipeError
from posttrain.recipe import Device, load_run

RECIPE = """\
method: sft
data:
  train:
    - {task: arithmetic, n: 10}
trainer: {push_to_hub: true, hub_model_id: someone/zephyr-smoke, max_steps: 1}
"""


def test_an_offline_machine_fails_before_training(write_recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from posttrain.hub import hub_unreachable_reason

    hub_unreachable_reason.cache_clear()
    path = write_recipe(RECIPE + f"run: {{dir: {tmp_path / 'runs'}}}\n")
    start = time.monotonic()
    assert main(["run", str(path)]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert f"{path}:5: trainer.push_to_hub: the Hugging Face hub is unreachable (HF_HUB_OFFLINE=1 is set)" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()  # nothing trained, nothing written
    hub_unreachable_reason.cache_clear()


def test_strategies_posttrain_does_not_carry_out_are_recipe_errors(write_recipe):
    with pytest.raises(RecipeError, match="use end or every_save") as info:
        load_run(write_recipe(RECIPE.replace("max_steps: 1", "hub_strategy: all_checkpoints")))
    assert info.value.key == "trainer.hub_strategy"


def test_the_trainer_does_not_push_itself(write_recipe, tmp_path):
    from posttrain.rundir import RunDir
    from posttrain.trainers.common import trl_arguments

    loaded = load_run(write_recipe(RECIPE))
    args = trl_arguments(loaded, Device(cuda=False, bf16=False), RunDir(tmp_path / "run"), lambda _: {})
    assert args["push_to_hub"] is False and not {k for k in args if k.startswith("hub_")}


def test_model_card_holds_the_resolved_recipe_and_the_report(write_recipe):
    from posttrain.recipe import resolved_dict
    from posttrain.trainers.hub_push import model_card

    text = RECIPE.replace("- {task: arithmetic, n: 10}", "- {hub: HuggingFaceH4/ultrachat_200k, split: train_sft}")
    loaded = load_run(write_recipe(text + "model: {name_or_path: mistralai/Mistral-7B-v0.1}\n"
                                   "peft: {r: 8, target_modules: all-linear}\n"))
    resolved = resolved_dict(loaded, Device(cuda=True, bf16=True, world_size=8))
    report = {"trained": {"accuracy": 0.5, "correct": 1, "samples": 2}}
    card = model_card(loaded, resolved, report)
    _, front, body = card.split("---", 2)
    meta = yaml.safe_load(front)
    assert meta["base_model"] == "mistralai/Mistral-7B-v0.1"
    assert meta["datasets"] == ["HuggingFaceH4/ultrachat_200k"] and {"posttrain", "sft", "lora"} <= set(meta["tags"])
    recipe_block = body.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(recipe_block) == resolved
    assert '"accuracy": 0.5' in body and "adapter/" in body


def test_a_finished_run_is_pushed_with_its_adapter_and_card(tmp_path, monkeypatch, capsys):
    """The real huggingface_hub client against a stand-in hub (tests/e2e/hub_standin.py): final/
    at the root, adapter/ under adapter/, README.md with the resolved recipe; byte for byte."""
    from posttrain.hub import hub_unreachable_reason
    from tests.e2e.hub_standin import StandInHub

    hub = StandInHub()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_standin_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    import huggingface_hub.constants

    # the tests import huggingface_hub in offline mode (conftest.py), which it reads once, at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub_unreachable_reason.cache_clear()
    recipe = tmp_path / "push.yaml"
    recipe.write_text(RECIPE.replace("max_steps: 1}", "max_steps: 1, logging_steps: 1}")
                      + "model: {tiny: {hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}\n"
                      "peft: {r: 4, lora_alpha: 8, target_modules: all-linear}\n"
                      f"batch: {{per_device: 2}}\nrun: {{dir: {tmp_path / 'runs'}, name: pushed}}\n")
    try:
        assert main(["run", str(recipe)]) == 0
    finally:
        hub.close()
        hub_unreachable_reason.cache_clear()
    run = tmp_path / "runs" / "pushed"
    files = hub.repos["someone/zephyr-smoke"]
    for path in (run / "final").iterdir():
        assert files[path.name] == path.read_bytes(), path.name
    for path in (run / "adapter").iterdir():
        assert files[f"adapter/{path.name}"] == path.read_bytes(), path.name
    card = files["README.md"].decode()
    assert yaml.safe_load(card.split("```yaml\n", 1)[1].split("```", 1)[0]) == \
        yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert "Bearer hf_standin_token" in hub.tokens
    assert "posttrain: pushed final/ to" in capsys.readouterr().out
