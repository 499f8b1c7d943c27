"""Bad input found only once the model is loaded still ends in one line, before any step."""

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e

RECIPE = """\
method: sft
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - {{task: arithmetic, n: 16}}
batch: {{per_device: 8}}
trainer: {{max_steps: 2}}
peft: {peft}
run: {{dir: {dir}, name: lora}}
"""


def test_lora_target_modules_are_checked_against_the_model(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(peft="{r: 4, target_modules: [q_proj, query_key_value]}", dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([l for l in err.splitlines() if l.startswith("error:")]) == 1
    assert (f"{recipe}:10: peft.target_modules: 'query_key_value' names no module of tiny (its layers: down_proj, "
            "embed_tokens, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj; or all-linear)") in err
    assert not list((tmp_path / "runs" / "lora" / "checkpoints").iterdir())
    recipe.write_text(RECIPE.format(peft="{r: 4, target_modules: [q_proj, v_proj]}", dir=tmp_path / "runs"))
    assert main(["run", str(recipe), "--overwrite"]) == 0  # names that exist train
