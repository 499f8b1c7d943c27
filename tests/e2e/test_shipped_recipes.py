"""Every shipped recipe's tiny smoke variant runs through the CLI: the real recipe's settings
(loss types, rewards, templates, KL) on the tiny model for 2 steps."""

import json
import math
from pathlib import Path

import pytest
import yaml

from posttrain.cli import main

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
SMOKES = sorted(REPO.glob("recipes/*/smoke*.yaml"))


@pytest.mark.parametrize("recipe", SMOKES, ids=[str(p.relative_to(REPO / "recipes")) for p in SMOKES])
def test_smoke_variant_runs(recipe, tmp_path):
    assert main(["run", str(recipe), f"run.dir={tmp_path}"]) == 0
    (run,) = tmp_path.iterdir()
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert (run / "final" / "config.json").is_file()
    losses = [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    tokenizer_config = (run / "final" / "chat_template.jinja").read_text()
    if resolved["model"].get("chat_template") == "tulu":
        assert "<|assistant|>" in tokenizer_config
    if resolved["method"] == "dpo":  # the real recipe's loss and beta (Tulu 3: sigmoid_norm, beta 5)
        real = yaml.safe_load((recipe.parent / yaml.safe_load(recipe.read_text())["extends"]).read_text())
        assert resolved["trainer"].get("loss_type") == real["trainer"].get("loss_type")
        assert resolved["trainer"].get("beta") == real["trainer"].get("beta")
    if resolved["method"] == "rlvr":
        logged = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        names = {r["name"] for r in resolved["rewards"]}
        assert all(f"rewards/{name}/mean" in logged[0] for name in names)
        if resolved["trainer"].get("beta"):
            assert "kl" in logged[0]  # the reference model is loaded and the KL term logged


def test_every_real_recipe_has_a_smoke_variant():
    # quickstart and the comparisons (journey-countdown, scarce-data) run the tiny model already;
    # smollm2's recipes run themselves, shortened, on the real model (tests/real_model)
    tiny = ("quickstart", "journey-countdown", "scarce-data", "smollm2")
    real = {p.parent.name for p in REPO.glob("recipes/*/*.yaml") if p.parent.name not in tiny}
    assert real and real == {p.parent.name for p in SMOKES}
