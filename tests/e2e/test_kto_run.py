"""KTO through the CLI on the tiny model: unpaired rows shaped like trl-lib/kto-mix-14k's, pairs
turned unpaired, both KTO losses, the side weights, LoRA, and the errors TRL would raise late."""

import json
import math
from pathlib import Path

import pytest
import yaml

from posttrain.cli import main

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
TINY = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128}

RECIPE = """\
method: kto
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - {source}
batch: {{per_device: {per_device}}}
trainer:
  max_steps: 2
  learning_rate: 1.0e-3
  logging_steps: 1
  max_length: 128
  seed: 0
{extra}run: {{name: {name}, dir: {dir}}}
"""


def write(tmp_path, name, source="path: " + str(REPO / "recipes/kto/kto-mix.example.jsonl"), extra="",
          per_device=4) -> Path:
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(RECIPE.format(source=source, extra=extra, name=name, dir=tmp_path / "runs",
                                    per_device=per_device))
    return recipe


def changed_tensors(run: Path) -> set[str]:
    from safetensors.torch import load_file

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    start = load_file(str(tiny_model_path(TinyModelSpec(**TINY)) / "model.safetensors"))
    end = load_file(str(run / "final" / "model.safetensors"))
    return {k for k in start if not (start[k] == end[k]).all()}, set(start)


@pytest.mark.parametrize("name,options,peft,per_device", [
    ("kto", {"loss_type": "kto", "beta": 0.2, "desirable_weight": 1.5, "undesirable_weight": 0.5}, None, 4),
    ("apo-zero", {"loss_type": "apo_zero_unpaired"}, None, 1),  # no KL estimate: batches of one are fine
    ("lora", {}, "{r: 4, lora_alpha: 8, target_modules: all-linear}", 4),
])
def test_kto_trains_on_unpaired_rows_with_every_loss_option(tmp_path, name, options, peft, per_device):
    extra = "".join(f"  {k}: {v}\n" for k, v in options.items()) + (f"peft: {peft}\n" if peft else "")
    assert main(["run", str(write(tmp_path, name, extra=extra, per_device=per_device))]) == 0
    run = tmp_path / "runs" / name
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logged if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2] and all(math.isfinite(m["loss"]) for m in steps)
    sides = [[m[k] for k in ("logps/chosen", "logps/rejected") if k in m] for m in steps]  # a batch may hold one label
    assert all(side and all(math.isfinite(v) for v in side) for side in sides)
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert {k: resolved["trainer"][k] for k in options} == options  # the recipe's KTO options reached TRL
    assert json.loads((run / "env.json").read_text())["data"]["kto"] == {"desirable": 4, "undesirable": 4}
    changed, every = changed_tensors(run)
    if peft:  # merged LoRA on every linear layer: exactly the projections moved
        assert (run / "adapter" / "adapter_config.json").is_file()
        assert changed == {k for k in every if "proj" in k}
    else:
        assert changed == every


def test_preference_pairs_become_one_desirable_and_one_undesirable_record_each(tmp_path, capsys):
    recipe = write(tmp_path, "pairs", source="{task: arithmetic_pairs, n: 12}")
    assert main(["run", str(recipe)]) == 0
    assert "posttrain: KTO records: 12 desirable, 12 undesirable" in capsys.readouterr().out
    assert json.loads((tmp_path / "runs" / "pairs" / "env.json").read_text())["data"]["kto"] == {
        "desirable": 12, "undesirable": 12}


def test_unpairing_keeps_labels_and_mixes_them_for_sequential_batches():
    from posttrain.trainers.kto import unpaired

    pairs = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(50)]
    records, stats = unpaired(pairs, seed=0)
    assert stats == {"desirable": 50, "undesirable": 50}
    assert {(r["prompt"], r["completion"], r["label"]) for r in records} == (
        {(f"q{i}", f"good {i}", True) for i in range(50)} | {(f"q{i}", f"bad {i}", False) for i in range(50)})
    first_batch = [r["label"] for r in records[:16]]
    assert 0 < sum(first_batch) < 16  # both labels in the first sequential batch
    assert unpaired(pairs, seed=0)[0] == records  # seeded
    labelled = [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "q", "completion": "", "label": False}]
    assert unpaired(labelled, seed=0) == ([labelled[0]], {"desirable": 1, "undesirable": 0,
                                                          "dropped: empty completion": 1})


def test_kto_errors_name_the_key_before_anything_loads(tmp_path, capsys):
    # issue 31: batch.per_device 1 trains, its KL completions paired across the dataset
    assert main(["run", str(write(tmp_path, "one", per_device=1))]) == 0
    assert "each KL completion is the previous record's across the dataset" in capsys.readouterr().out
    assert main(["run", str(write(tmp_path, "random", extra="  train_sampling_strategy: random\n"))]) == 2
    assert "trainer.train_sampling_strategy: KTO's KL estimate needs sequential batches" in capsys.readouterr().err
    assert main(["run", str(write(tmp_path, "loss", extra="  loss_type: sigmoid\n"))]) == 2
    assert "trainer.loss_type: 'sigmoid' is not one of 'kto', 'apo_zero_unpaired'" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "completion": "a", "label": "yes"}) + "\n")
    assert main(["run", str(write(tmp_path, "label", source=f"path: {bad}"))]) == 2
    assert f"{bad}:1: 'label' must be true (a desirable completion) or false, got 'yes'" in capsys.readouterr().err
    assert main(["run", str(write(tmp_path, "rewards", extra="rewards: [{name: numeric}]\n"))]) == 2
    assert "rewards: rewards are used for method: rlvr or rloo or online_dpo, not kto" in capsys.readouterr().err
