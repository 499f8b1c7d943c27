"""Published recipes of alignment-handbook, open-r1, open-instruct, LLaMA-Factory and axolotl,
translated into posttrain recipes under recipes/: each one's resolved values (for its launch
block's machine) must equal its source's.

SOURCES holds, per translated recipe, the source file's settings as that file writes them
(transcribed from the file at the commit named; the recipe's header names the same file). Every
setting of the source must be either compared here (same value at posttrain's key for it) or
listed as deliberately different, with its key named in the recipe's header, where the reason is
written. Nothing here reads the network: the sources were read once, with the commit recorded.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest

from posttrain.recipe import load_run, resolved_dict, target_device

REPO = Path(__file__).resolve().parents[2]

# Where posttrain writes a setting that the other tools write under another name (a dotted path
# in the resolved recipe); a source key not here is the trainer key of the same name.
RENAMED = {
    "model_name_or_path": "model.name_or_path", "base_model": "model.name_or_path",
    "model_revision": "model.revision", "torch_dtype": "model.dtype", "trust_remote_code": "model.trust_remote_code",
    "attn_implementation": "model.attn_implementation", "chat_template": "model.chat_template",
    "eos_token": "model.eos_token",
    "warmup_ratio": "trainer.warmup_steps",  # transformers 5: warmup_steps below 1 is a ratio
    "max_seq_length": "trainer.max_length", "cutoff_len": "trainer.max_length", "sequence_len": "trainer.max_length",
    "gradient_checkpointing": "trainer.activation_checkpointing",
    "micro_batch_size": "trainer.per_device_train_batch_size",
    "num_epochs": "trainer.num_train_epochs", "lr_scheduler": "trainer.lr_scheduler_type",
    "preprocessing_num_workers": "trainer.dataset_num_proc",
    "lora_rank": "peft.r", "lora_r": "peft.r", "lora_alpha": "peft.lora_alpha", "lora_dropout": "peft.lora_dropout",
    "lora_target_modules": "peft.target_modules", "pref_beta": "trainer.beta",
    "system_prompt": "data.train.0.system_prompt",
}


@dataclass
class Published:
    recipe: str  # under recipes/
    repo: str
    path: str
    commit: str
    world_size: int  # the source's launch: processes
    values: dict[str, Any]  # the source file's settings as written there
    # source key -> a check of the resolved recipe (for settings that are not one value at one key)
    checks: dict[str, Callable[[dict], bool]] = field(default_factory=dict)
    # source key -> the value posttrain writes (a translation of the same setting)
    translated: dict[str, Any] = field(default_factory=dict)
    different: tuple[str, ...] = ()  # deliberately different: the header says what and why


def _at(resolved: dict, dotted: str):
    value = resolved
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value.get(part)
        if value is None:
            return None
    return value


def _hub_sources(resolved: dict) -> list[tuple]:
    return [(s.get("hub") or s.get("path"), s.get("name"), s.get("split"), s.get("weight"))
            for s in resolved["data"]["train"]]


ZEPHYR_TEMPLATE = ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
                   "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
                   "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'"
                   "  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n"
                   "{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}")
AH = ("huggingface/alignment-handbook", "925acdfe4b2b4e38c3dabd1851bc418f0b656351")

SOURCES = [
    Published(
        "alignment-handbook/zephyr-7b-beta-sft.yaml", AH[0], "recipes/zephyr-7b-beta/sft/config_full.yaml", AH[1],
        world_size=8,  # README: accelerate launch --config_file recipes/accelerate_configs/zero3.yaml (8 GPUs)
        values={
            "model_name_or_path": "mistralai/Mistral-7B-v0.1", "model_revision": "main", "torch_dtype": "bfloat16",
            "attn_implementation": "flash_attention_2", "chat_template": ZEPHYR_TEMPLATE,
            "dataset_mixture": "ultrachat_200k train_sft + test_sft, columns [messages], test_split_size 1000, seed 0",
            "dataset_num_proc": 12, "bf16": True, "do_eval": True, "eval_strategy": "epoch",
            "gradient_accumulation_steps": 1, "gradient_checkpointing": True,
            "gradient_checkpointing_kwargs": {"use_reentrant": False}, "hub_model_id": "zephyr-7b-sft-full",
            "hub_strategy": "every_save", "learning_rate": 2.0e-05, "log_level": "info", "logging_steps": 5,
            "logging_strategy": "steps", "lr_scheduler_type": "cosine", "max_seq_length": 2048, "max_steps": -1,
            "num_train_epochs": 1, "output_dir": "data/zephyr-7b-sft-full", "overwrite_output_dir": True,
            "per_device_eval_batch_size": 8, "per_device_train_batch_size": 16, "push_to_hub": True,
            "remove_unused_columns": True, "report_to": ["wandb"], "save_strategy": "steps", "save_steps": 100,
            "save_total_limit": 1, "seed": 42, "warmup_ratio": 0.1, "accelerate_config": "zero3.yaml",
        },
        checks={
            "dataset_mixture": lambda r: _hub_sources(r) == [
                ("HuggingFaceH4/ultrachat_200k", "default", "train_sft", 1.0),
                ("HuggingFaceH4/ultrachat_200k", "default", "test_sft", 1.0)]
            and r["data"]["eval_size"] == 1000
            and all(s["columns"] == {"prompt": None, "prompt_id": None} for s in r["data"]["train"]),
            "accelerate_config": lambda r: r["launch"]["zero"] == 3,
            "report_to": lambda r: "wandb" in r["tracking"],
        },
        different=("output_dir", "overwrite_output_dir", "do_eval", "remove_unused_columns", "hub_strategy",
                   "dataset_mixture"),
    ),
    Published(
        "alignment-handbook/zephyr-7b-beta-dpo.yaml", AH[0], "recipes/zephyr-7b-beta/dpo/config_full.yaml", AH[1],
        world_size=8,
        values={
            "model_name_or_path": "alignment-handbook/zephyr-7b-sft-full", "torch_dtype": None,
            "dataset_mixture": "ultrafeedback_binarized train_prefs + test_prefs, columns [chosen, rejected], "
                               "test_split_size 2000, seed 0",
            "dataset_num_proc": 12, "bf16": True, "beta": 0.01, "do_eval": True, "eval_strategy": "steps",
            "eval_steps": 100, "gradient_accumulation_steps": 2, "gradient_checkpointing": True,
            "gradient_checkpointing_kwargs": {"use_reentrant": False}, "hub_model_id": "zephyr-7b-dpo-full",
            "learning_rate": 5.0e-7, "log_level": "info", "logging_steps": 10, "lr_scheduler_type": "cosine",
            "max_length": 1024, "max_prompt_length": 512, "num_train_epochs": 1, "optim": "adamw_torch",
            "output_dir": "data/zephyr-7b-dpo-full", "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8, "push_to_hub": True, "save_strategy": "steps", "save_steps": 100,
            "save_total_limit": 1, "seed": 42, "warmup_ratio": 0.1, "accelerate_config": "zero3.yaml",
        },
        checks={
            "dataset_mixture": lambda r: _hub_sources(r) == [
                ("HuggingFaceH4/ultrafeedback_binarized", "default", "train_prefs", 1.0),
                ("HuggingFaceH4/ultrafeedback_binarized", "default", "test_prefs", 1.0)]
            and r["data"]["eval_size"] == 2000,
            "accelerate_config": lambda r: r["launch"]["zero"] == 3,
            "max_prompt_length": lambda r: r["data"]["overlong"] == "truncate",
        },
        translated={"torch_dtype": "float32"},  # null: transformers 4 loaded float32 weights
        different=("output_dir", "do_eval", "max_prompt_length", "torch_dtype", "dataset_mixture"),
    ),
]


def _resolved(entry: Published) -> dict:
    loaded = load_run(REPO / "recipes" / entry.recipe)
    device = target_device(loaded)
    assert device.world_size == entry.world_size, "the recipe's launch block is not the source's machine"
    return resolved_dict(loaded, device)


@pytest.mark.parametrize("entry", SOURCES, ids=[e.recipe for e in SOURCES])
def test_translated_recipe_resolves_to_its_sources_values(entry):
    resolved = _resolved(entry)
    for key, value in entry.values.items():
        if key in entry.checks:
            assert entry.checks[key](resolved), key
            continue
        expected = entry.translated.get(key, value)
        path = RENAMED.get(key, f"trainer.{key}")
        if key in entry.different and key not in entry.translated:
            continue  # not expressed as a value here; the header says why
        assert _at(resolved, path) == expected, (key, path, _at(resolved, path), expected)


@pytest.mark.parametrize("entry", SOURCES, ids=[e.recipe for e in SOURCES])
def test_header_names_the_source_and_every_difference(entry):
    text = (REPO / "recipes" / entry.recipe).read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert entry.repo in header and entry.path in header and entry.commit[:8] in header
    for key in entry.different:
        assert key in header, f"{entry.recipe}: the header does not say why {key} differs"
    unchecked = [k for k in entry.different if k not in entry.checks and k not in entry.translated]
    assert all(k in entry.values for k in entry.different), "a difference names a key the source lacks"
    assert len(unchecked) <= len(entry.different)


@pytest.mark.parametrize("entry", SOURCES, ids=[e.recipe for e in SOURCES])
def test_every_translated_recipe_has_a_smoke_variant_on_dataset_shaped_rows(entry):
    recipe = REPO / "recipes" / entry.recipe
    smoke = recipe.with_name(f"smoke-{recipe.name}")
    assert smoke.is_file(), smoke
    import yaml

    data = yaml.safe_load(smoke.read_text())
    assert data["extends"] == recipe.name
    for source in data["data"]["train"]:  # fixture rows shaped like the dataset's, not generated tasks
        assert "path" in source and (smoke.parent / source["path"]).is_file()


def test_at_least_eight_recipes_from_the_five_projects():
    assert len(SOURCES) >= 8
    assert {e.repo.split("/")[1] for e in SOURCES} >= {"alignment-handbook", "open-r1", "open-instruct",
                                                       "LLaMA-Factory", "axolotl"}
