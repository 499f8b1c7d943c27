"""The distillation teacher under ZeRO-3 on 2 CPU ranks (gloo): TRL prepares it with DeepSpeed, so
each rank holds half its parameters (the way posttrain spreads a teacher's memory, since TRL 1.16
has no separate teacher device: docs/recipes.md)."""

import json
import re

import pytest

from posttrain.cli import main

pytestmark = pytest.mark.distributed

TINY = "{hidden_size: 64, num_layers: 2, num_heads: 4, intermediate_size: 128}"
TRAINER = {"distill": "max_completion_length: 8", "gkd": "max_new_tokens: 8, max_length: 128"}


@pytest.mark.parametrize("method", ["distill", "gkd"])
def test_each_rank_holds_half_the_teacher_under_zero3(tmp_path, capfd, method):
    recipe = tmp_path / f"{method}.yaml"
    recipe.write_text(f"""\
method: {method}
model: {{name_or_path: tiny, tiny: {TINY}}}
teacher: {{name_or_path: tiny}}
data: {{train: [{{task: arithmetic, n: 32}}]}}
batch: {{per_device: 4}}
trainer: {{max_steps: 2, logging_steps: 1, learning_rate: 1.0e-3, save_steps: 2, {TRAINER[method]}}}
launch: {{gpus_per_node: 2, zero: 3}}
run: {{name: {method}, dir: {tmp_path / 'runs'}}}
""")
    assert main(["launch", str(recipe)]) == 0
    shards = re.findall(r"teacher sharded by ZeRO-3: rank (\d) holds ([\d,]+) of its ([\d,]+) parameters",
                        capfd.readouterr().out)
    assert sorted(rank for rank, _, _ in shards) == ["0", "1"], shards
    for _, held, total in shards:
        held, total = int(held.replace(",", "")), int(total.replace(",", ""))
        assert total > 1_000_000 and abs(held - total / 2) <= 64, (held, total)  # the tiny default, halved
    run = tmp_path / "runs" / method
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len([m for m in steps if "loss" in m]) == 2
    assert (run / "final" / "config.json").is_file()
