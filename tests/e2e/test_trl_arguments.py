"""recipe.resolved.yaml's trainer: block is exactly what TRL's config was built with: the config
rebuilt from the recorded block equals the built trainer's, field for field, for every method."""

from pathlib import Path

import pytest
import yaml

from posttrain.methods import METHODS
from posttrain.recipe import Device, load_run
from posttrain.rundir import RunDir, prepare
from posttrain.trainers.skeleton import build_trainer, config_class

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SMOKES = {"sft": "recipes/tulu3/smoke-sft.yaml", "dpo": "recipes/tulu3/smoke-dpo.yaml",
          "rlvr": "recipes/tulu3/smoke-rlvr.yaml", "kto": "recipes/kto/smoke.yaml",
          "reward": "recipes/quickstart/reward.yaml", "prm": "tests/e2e/prm-smoke.yaml",
          "rloo": "recipes/trl-examples/smoke-rloo-qwen3-numinamath.yaml", "orpo": "recipes/trl-examples/smoke-orpo-gpt2.yaml",
          "cpo": "recipes/trl-examples/smoke-cpo-gpt2.yaml", "online_dpo": "recipes/online-dpo/smoke.yaml",
          "distill": "recipes/trl-examples/smoke-distillation-qwen2.5.yaml", "gkd": "recipes/trl-examples/smoke-gkd-qwen2.yaml"}


def test_every_method_has_a_smoke_recipe_here():
    assert set(SMOKES) == set(METHODS)


@pytest.mark.parametrize("method", sorted(SMOKES))
def test_the_recorded_trainer_block_rebuilds_the_trainers_config(method, tmp_path):
    loaded = load_run(REPO / SMOKES[method], [f"run.dir={tmp_path}"])
    assert loaded.spec.method == method
    run = RunDir(loaded.run_dir)
    prepare(run, resume=False, overwrite=False)
    trainer = build_trainer(loaded, run, None, Device.detect())
    recorded = yaml.safe_load(run.resolved_recipe.read_text())["trainer"]
    assert config_class(method)(**recorded).to_dict() == trainer.args.to_dict()
    # What posttrain decides is in the record too, not only the recipe's own keys.
    assert recorded["output_dir"] == str(run.checkpoints) and recorded["run_name"] == loaded.run_name
    assert recorded["per_device_train_batch_size"] == loaded.spec.batch.per_device
    assert recorded["gradient_accumulation_steps"] == loaded.accumulation
    assert recorded["use_cpu"] is True and recorded["bf16"] is False  # this machine has no GPU
    assert recorded["report_to"] == trainer.args.report_to
    if method == "rlvr":
        assert recorded["reward_weights"] == [r.weight for r in loaded.spec.rewards]
