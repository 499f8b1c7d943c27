"""DPO through the CLI on the tiny model: loss variants, unusable pairs dropped and counted."""

import json
import math

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.e2e


def pairs(n: int) -> list[dict]:
    good = [{"prompt": [{"role": "user", "content": f"Compute {i} + 1."}],
             "chosen": [{"role": "assistant", "content": f"Answer: {i + 1}"}],
             "rejected": [{"role": "assistant", "content": f"Answer: {i + 2}"}]} for i in range(n)]
    bad = [
        {"prompt": "Same?", "chosen": "yes", "rejected": "yes"},            # chosen == rejected
        {"prompt": "Empty?", "chosen": "", "rejected": "no"},               # empty side
        {"prompt": "Long?", "chosen": "x " * 400, "rejected": "no"},        # over max_length
    ]
    return good + bad


RECIPE = """\
method: dpo
model:
  name_or_path: tiny
  tiny: {{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}}
data:
  train:
    - path: {data}
batch: {{per_device: 4}}
trainer:
  max_steps: 2
  learning_rate: 1.0e-3
  logging_steps: 1
  max_length: 128
  seed: 0
{extra}run: {{name: {name}, dir: {dir}}}
"""


@pytest.mark.parametrize("name,extra", [
    ("sigmoid", "  loss_type: [sigmoid]\n"),                                              # DPO
    ("sigmoid-norm", "  loss_type: [sigmoid_norm]\n  beta: 5.0\n"),                      # Tulu 3
    ("sigmoid-sft", "  loss_type: [sigmoid, sft]\n  loss_weights: [1.0, 0.5]\n"),          # RPO
    ("lora", "  loss_type: [ipo]\npeft: {r: 4, lora_alpha: 8, target_modules: all-linear}\n"),
])
def test_dpo_variants_train_and_drop_unusable_pairs(tmp_path, capsys, name, extra):
    from safetensors.torch import load_file

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    data = tmp_path / "pairs.jsonl"
    # Strings and messages cannot share one dataset: the bad pairs go in as strings only when
    # the good ones are strings too, so convert the good ones for this test.
    records = [{"prompt": r["prompt"][0]["content"], "chosen": r["chosen"][0]["content"],
                "rejected": r["rejected"][0]["content"]} if isinstance(r["prompt"], list) else r for r in pairs(12)]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(RECIPE.format(data=data, extra=extra, name=name, dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    assert "dropped 3 unusable pairs: 1 chosen == rejected, 1 empty, 1 longer than max_length (128)" \
        in capsys.readouterr().out
    run = tmp_path / "runs" / name
    env = json.loads((run / "env.json").read_text())
    assert env["data"]["dropped_pairs"] == {"chosen == rejected": 1, "empty": 1, "longer than max_length (128)": 1}
    logged = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logged if "loss" in m]
    assert [m["step"] for m in steps] == [1, 2] and all(math.isfinite(m["loss"]) for m in steps)
    assert all(math.isfinite(m["rewards/margins"]) for m in steps)  # chosen minus rejected reward
    start = load_file(str(tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4,
                                                        intermediate_size=128)) / "model.safetensors"))
    end = load_file(str(run / "final" / "model.safetensors"))
    changed = {k for k in start if not (start[k] == end[k]).all()}
    if name == "lora":  # merged LoRA on every linear layer: exactly the projections moved
        assert changed == {k for k in start if "proj" in k}
    else:
        assert changed == set(start)


def test_overlong_pairs_can_be_truncated_instead(tmp_path, capsys):
    """`data.overlong: truncate` keeps the over-long pair for TRL to truncate (as
    alignment-handbook, open-instruct and LLaMA-Factory do) and counts it; a pair whose prompt
    alone fills max_length is still dropped: nothing of its answers would be left."""
    records = [r for r in pairs(12) if isinstance(r["prompt"], str)]
    records += [{"prompt": f"Compute {i} + 1.", "chosen": f"Answer: {i + 1}", "rejected": f"Answer: {i + 2}"}
                for i in range(8)]
    records.append({"prompt": "y " * 400, "chosen": "a", "rejected": "b"})
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    recipe = tmp_path / "dpo.yaml"
    text = RECIPE.format(data=data, extra="", name="truncate", dir=tmp_path / "runs")
    recipe.write_text(text.replace("data:\n  train:", "data:\n  overlong: truncate\n  train:"))
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "1 pairs longer than max_length (128) are truncated (keep_start)" in out
    assert "dropped 3 unusable pairs: 1 chosen == rejected, 1 empty, 1 prompt alone fills max_length (128)" in out
    env = json.loads((tmp_path / "runs" / "truncate" / "env.json").read_text())
    assert env["data"]["truncated_pairs"] == 1


def test_dpo_on_message_pairs(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pairs(8)[:8]))
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(RECIPE.format(data=data, extra="", name="messages", dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    assert (tmp_path / "runs" / "messages" / "final" / "config.json").is_file()


def test_dpo_on_ultrafeedback_shaped_rows(tmp_path):
    """A string prompt with chosen/rejected conversations that repeat it (UltraFeedback
    binarized, the Tulu 3 preference mixture): TRL's tokenizer crashed on these (issue 13)."""
    rows = [{"prompt": f"Compute {i} + 1.", "prompt_id": str(i),
             "chosen": [{"content": f"Compute {i} + 1.", "role": "user"},
                        {"content": f"Answer: {i + 1}", "role": "assistant"}],
             "rejected": [{"content": f"Compute {i} + 1.", "role": "user"},
                          {"content": f"Answer: {i + 2}", "role": "assistant"}],
             "score_chosen": 9.0, "score_rejected": 2.0} for i in range(8)]
    data = tmp_path / "ultrafeedback.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(RECIPE.format(data=data, extra="", name="ultrafeedback", dir=tmp_path / "runs"))
    assert main(["run", str(recipe)]) == 0
    assert (tmp_path / "runs" / "ultrafeedback" / "final" / "config.json").is_file()


def test_on_policy_pairs_are_sampled_from_the_starting_model_and_trained_on(tmp_path, monkeypatch, capsys):
    """Pairs sampled from the tiny model itself, scored by a reward that splits its answers."""
    from safetensors.torch import load_file

    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    (tmp_path / "split_reward.py").write_text(
        "def first_digit_odd(completions, **columns):\n"
        "    texts = [c if isinstance(c, str) else c[-1]['content'] for c in completions]\n"
        "    firsts = [next((ch for ch in t if ch.isdigit()), None) for t in texts]\n"
        "    return [1.0 if d is not None and int(d) % 2 else 0.0 for d in firsts]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "onpolicy.yaml"
    recipe.write_text(RECIPE.format(
        data="x", extra="", name="onpolicy", dir=tmp_path / "runs").replace(
        "    - path: x\n",
        "    - task: arithmetic\n      n: 16\n      on_policy: {samples: 4, pairs: 2, max_new_tokens: 16, "
        "reward: 'split_reward:first_digit_odd'}\n"))
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "on-policy pairs from task:arithmetic:train:" in out
    run = tmp_path / "runs" / "onpolicy"
    stats = json.loads((run / "env.json").read_text())["data"]["on_policy"]["task:arithmetic:train"]
    assert stats["prompts"] == 16 and stats["pairs"] > 0
    assert stats["pairs"] <= 2 * stats["prompts with pairs"]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if "loss" in m] == [1, 2]
    start = load_file(str(tiny_model_path(TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4,
                                                        intermediate_size=128)) / "model.safetensors"))
    end = load_file(str(run / "final" / "model.safetensors"))
    assert any(not (start[k] == end[k]).all() for k in start)


def test_on_policy_sources_belong_to_dpo(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("method: sft\ndata:\n  train:\n    - {task: arithmetic, on_policy: {samples: 4}}\n")
    assert main(["run", str(recipe)]) == 2
    assert "data.train.0.on_policy: on-policy pairs are for method: dpo" in capsys.readouterr().err
