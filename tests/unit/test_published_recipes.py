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
    "gradient_checkpointing_kwargs": "trainer.activation_checkpointing_kwargs",
    "micro_batch_size": "trainer.per_device_train_batch_size",
    "num_epochs": "trainer.num_train_epochs", "lr_scheduler": "trainer.lr_scheduler_type",
    "preprocessing_num_workers": "trainer.dataset_num_proc",
    "lora_rank": "peft.r", "lora_r": "peft.r", "lora_alpha": "peft.lora_alpha", "lora_dropout": "peft.lora_dropout",
    "lora_target_modules": "peft.target_modules", "pref_beta": "trainer.beta",
    "system_prompt": "data.train.0.system_prompt", "special_tokens.pad_token": "model.pad_token",
    "sample_packing": "trainer.packing", "eval_sample_packing": "trainer.eval_packing",
    "optimizer": "trainer.optim", "val_set_size": "data.eval_fraction",
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

# TRL's ORPO and CPO example commands share every setting but the output directory.
TRL_PAIRWISE = {"model_name_or_path": "gpt2", "per_device_train_batch_size": 4, "max_steps": 1000,
                "learning_rate": 8e-6, "gradient_accumulation_steps": 1, "logging_steps": 10, "eval_steps": 500,
                "warmup_steps": 150, "report_to": "wandb", "bf16": True, "logging_first_step": True,
                "remove_unused_columns": False}
TRL_PAIRWISE_CHECKS = {"report_to": lambda r: bool(r.get("tracking", {}).get("wandb"))}
RLOO_SYSTEM_PROMPT = (
    "A conversation between user and assistant. The user asks a question, and the assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think></think> tags, i.e., <think>\nThis is my "
    "reasoning.\n</think>\nThis is my answer."
)

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


SOURCES.append(Published(
    "alignment-handbook/zephyr-7b-beta-sft-qlora.yaml", AH[0], "recipes/zephyr-7b-beta/sft/config_qlora.yaml", AH[1],
    world_size=1,  # README: accelerate launch --config_file recipes/accelerate_configs/ddp.yaml --num_processes=1
    values={
        "model_name_or_path": "mistralai/Mistral-7B-v0.1", "model_revision": "main", "torch_dtype": "bfloat16",
        "attn_implementation": "flash_attention_2", "load_in_4bit": True, "use_peft": True, "lora_r": 16,
        "lora_alpha": 16, "lora_dropout": 0.05,
        "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "chat_template": ZEPHYR_TEMPLATE,
        "dataset_mixture": "ultrachat_200k train_sft + test_sft, columns [messages], test_split_size 1000, seed 0",
        "dataset_num_proc": 12, "bf16": True, "do_eval": True, "eval_strategy": "epoch",
        "gradient_accumulation_steps": 2, "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False}, "hub_model_id": "zephyr-7b-sft-qlora",
        "hub_strategy": "every_save", "learning_rate": 2.0e-04, "log_level": "info", "logging_steps": 5,
        "logging_strategy": "steps", "lr_scheduler_type": "cosine", "max_seq_length": 2048, "max_steps": -1,
        "num_train_epochs": 1, "output_dir": "data/zephyr-7b-sft-qlora", "overwrite_output_dir": True,
        "per_device_eval_batch_size": 8, "per_device_train_batch_size": 4, "push_to_hub": True,
        "report_to": ["tensorboard"], "save_strategy": "steps", "save_steps": 100, "save_total_limit": 1,
        "seed": 42, "warmup_ratio": 0.1,
    },
    checks={
        # alignment-handbook's get_quantization_config: nf4, compute dtype = torch_dtype, no nested quant
        "load_in_4bit": lambda r: r["model"]["quantization"] == {"bits": 4, "quant_type": "nf4",
                                                                 "compute_dtype": "bfloat16", "double_quant": False},
        "use_peft": lambda r: r["peft"] is not None,
        "dataset_mixture": lambda r: _hub_sources(r) == [
            ("HuggingFaceH4/ultrachat_200k", "default", "train_sft", 1.0),
            ("HuggingFaceH4/ultrachat_200k", "default", "test_sft", 1.0)] and r["data"]["eval_size"] == 1000,
        "report_to": lambda r: "tracking" not in r or not r["tracking"].get("wandb"),
    },
    different=("output_dir", "overwrite_output_dir", "do_eval", "hub_strategy", "dataset_mixture", "report_to"),
))

R1 = ("huggingface/open-r1", "1416fa0cf21595d2083b399a2a0bbddd7f6e9563")
OI = ("allenai/open-instruct", "e6c3044aa6201c8bfa4573c1b03142af599e730d")
LF = ("hiyouga/LLaMA-Factory", "ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30")
LF_KTO = "dc85995aba68a5d29cbe47951a843491c0795737"
AX = ("axolotl-ai-cloud/axolotl", "067b021c8b87a9e5e380b9173c704cf7340e30f5")
OPEN_R1_SYSTEM = ("You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think "
                  "about the reasoning process as an internal monologue and then provide the user with the answer. "
                  "Respond in the following format: <think>\n...\n</think>\n<answer>\n...\n</answer>")
# open-r1's distillation template is 4,841 characters: compared by its sha256 (of the source's value).
DISTILL_TEMPLATE_SHA256 = "2414d952d2c0715de221eacbb814cd400262a83189b28a6bd928c44543e04bdf"
LF_LORA = {"finetuning_type": "lora", "lora_rank": 8, "lora_target": "all"}
LF_COMMON = {
    "model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "trust_remote_code": True, "do_train": True,
    "template": "qwen3_nothink", "cutoff_len": 2048, "max_samples": 1000, "preprocessing_num_workers": 16,
    "dataloader_num_workers": 4, "logging_steps": 10, "save_steps": 500, "plot_loss": True,
    "overwrite_output_dir": True, "save_only_model": False, "report_to": "none", "per_device_train_batch_size": 1,
    "gradient_accumulation_steps": 8, "num_train_epochs": 3.0, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1,
    "bf16": True, "ddp_timeout": 180000000, "resume_from_checkpoint": None,
}
LF_CHECKS = {
    "finetuning_type": lambda r: r["peft"] is not None,
    "lora_target": lambda r: r["peft"]["target_modules"] == "all-linear",
    "lora_rank": lambda r: r["peft"]["r"] == 8 and r["peft"]["lora_alpha"] == 16 and r["peft"]["lora_dropout"] == 0.0,
    "max_samples": lambda r: all(s["max_samples"] == 1000 for s in r["data"]["train"]),
    "report_to": lambda r: "tracking" not in r or not r["tracking"].get("wandb"),
    "do_train": lambda r: True,  # a run trains
}
LF_DIFFERENT = ("template", "stage", "do_train", "finetuning_type", "output_dir", "overwrite_output_dir", "plot_loss",
                "resume_from_checkpoint", "report_to")

SOURCES += [
    Published(
        "open-r1/openr1-distill-7b-sft.yaml", R1[0], "recipes/OpenR1-Distill-7B/sft/config_distill.yaml", R1[1],
        world_size=8,  # recipes/README.md: sbatch --nodes=1 slurm/train.slurm ... --accelerator zero3
        values={
            "model_name_or_path": "open-r1/Qwen2.5-Math-7B-RoPE-300k", "model_revision": "main",
            "torch_dtype": "bfloat16", "attn_implementation": "flash_attention_2",
            "chat_template": DISTILL_TEMPLATE_SHA256, "dataset_name": "open-r1/Mixture-of-Thoughts",
            "dataset_config": "all", "dataset_num_proc": 12, "eos_token": "<|im_end|>", "bf16": True,
            "do_eval": False, "eval_strategy": "no", "gradient_accumulation_steps": 8, "gradient_checkpointing": True,
            "gradient_checkpointing_kwargs": {"use_reentrant": False}, "hub_model_id": "OpenR1-Distill-7B",
            "hub_strategy": "every_save", "learning_rate": 4.0e-05, "log_level": "info", "logging_steps": 1,
            "logging_strategy": "steps", "lr_scheduler_type": "cosine_with_min_lr",
            "lr_scheduler_kwargs": {"min_lr_rate": 0.1}, "packing": False, "max_grad_norm": 0.2,
            "max_length": 32768, "max_steps": -1, "num_train_epochs": 5, "output_dir": "data/OpenR1-Distill-7B",
            "overwrite_output_dir": True, "per_device_eval_batch_size": 1, "per_device_train_batch_size": 2,
            "push_to_hub": True, "report_to": ["wandb"], "save_strategy": "epoch", "save_total_limit": 1,
            "seed": 42, "use_liger_kernel": True, "warmup_ratio": 0.03, "accelerator": "zero3",
        },
        checks={
            "chat_template": lambda r: _sha256(r["model"]["chat_template"]) == DISTILL_TEMPLATE_SHA256,
            "dataset_name": lambda r: _hub_sources(r) == [("open-r1/Mixture-of-Thoughts", "all", "train", 1.0)],
            "dataset_config": lambda r: r["data"]["train"][0]["name"] == "all",
            "do_eval": lambda r: not r["data"].get("eval") and r["trainer"]["eval_strategy"] == "no",
            "report_to": lambda r: "wandb" in r["tracking"],
            "accelerator": lambda r: r["launch"]["zero"] == 3,
        },
        different=("output_dir", "overwrite_output_dir", "hub_strategy", "dataset_name", "do_eval"),
    ),
    Published(
        "open-r1/qwen2.5-1.5b-instruct-grpo.yaml", R1[0], "recipes/Qwen2.5-1.5B-Instruct/grpo/config_demo.yaml",
        R1[1], world_size=8,  # README: sbatch --nodes=2 slurm/train.slurm ... --accelerator zero2 --dp 8
        values={
            "model_name_or_path": "Qwen/Qwen2.5-1.5B-Instruct", "model_revision": "main", "torch_dtype": "bfloat16",
            "attn_implementation": "flash_attention_2", "dataset_name": "open-r1/OpenR1-Math-220k",
            "dataset_prompt_column": "problem", "system_prompt": OPEN_R1_SYSTEM, "bf16": True, "use_vllm": True,
            "do_eval": False, "gradient_accumulation_steps": 4, "gradient_checkpointing": True,
            "gradient_checkpointing_kwargs": {"use_reentrant": False}, "hub_model_id": "Qwen2.5-1.5B-Open-R1-GRPO",
            "hub_strategy": "every_save", "learning_rate": 2.0e-05, "log_completions": True, "log_level": "info",
            "logging_first_step": True, "logging_steps": 1, "logging_strategy": "steps",
            "lr_scheduler_type": "cosine", "max_prompt_length": 512, "max_completion_length": 1024,
            "max_steps": -1, "num_generations": 16, "num_train_epochs": 1,
            "output_dir": "data/Qwen2.5-1.5B-Open-R1-GRPO", "overwrite_output_dir": True,
            "per_device_eval_batch_size": 16, "per_device_train_batch_size": 16, "push_to_hub": True,
            "report_to": ["wandb"], "reward_funcs": ["accuracy", "format", "tag_count"],
            "reward_weights": [1.0, 1.0, 1.0], "save_strategy": "epoch", "save_total_limit": 1, "seed": 42,
            "warmup_ratio": 0.1, "accelerator": "zero2",
        },
        checks={
            "dataset_name": lambda r: _hub_sources(r) == [("open-r1/OpenR1-Math-220k", None, "train", 1.0)],
            "dataset_prompt_column": lambda r: True,  # the MATH shape: prompt = problem (tests/unit/test_shapes.py)
            "reward_funcs": lambda r: [(x["name"], x.get("strict", False)) for x in r["rewards"]]
            == [("math", False), ("think_format", True), ("tag_count", True)],
            "reward_weights": lambda r: [x["weight"] for x in r["rewards"]] == [1.0, 1.0, 1.0],
            "do_eval": lambda r: not r["data"].get("eval"),
            "report_to": lambda r: "wandb" in r["tracking"],
            "accelerator": lambda r: r["launch"]["zero"] == 2,
            "max_prompt_length": lambda r: "max_prompt_length" not in r["trainer"],
            # TRL 0.18's vLLM was a `trl vllm-serve` server; the sbatch line's --dp 8 --tp 1
            "use_vllm": lambda r: r["trainer"]["use_vllm"] and r["trainer"]["vllm_mode"] == "server"
            and r["launch"]["slurm"]["vllm_server"]["data_parallel_size"] == 8
            and r["launch"]["slurm"]["vllm_server"]["tensor_parallel_size"] == 1,
        },
        different=("max_prompt_length", "dataset_prompt_column", "output_dir", "overwrite_output_dir",
                   "hub_strategy", "do_eval", "reward_funcs"),
    ),
    Published(
        "tulu3/sft.yaml", OI[0], "configs/train_configs/tulu3/tulu3_sft.yaml", OI[1],
        world_size=64,  # scripts/train/tulu3/finetune_8b.sh: --num_nodes 8 --gpus 8
        values={
            "model_name_or_path": "meta-llama/Llama-3.1-8B", "model_revision": "main",
            "tokenizer_name": "meta-llama/Llama-3.1-8B", "use_slow_tokenizer": True,
            "dataset_mixer": {"allenai/tulu-3-sft-mixture": 1.0}, "preprocessing_num_workers": 128,
            "per_device_train_batch_size": 1, "gradient_accumulation_steps": 2, "learning_rate": 5.0e-06,
            "max_seq_length": 4096, "lr_scheduler_type": "linear", "warmup_ratio": 0.03, "weight_decay": 0.0,
            "num_train_epochs": 2, "output_dir": "output/dpo_8b", "with_tracking": True, "report_to": ["wandb"],
            "logging_steps": 1, "checkpointing_steps": "epoch", "dataset_mix_dir": "output/dpo_8b",
        },
        checks={
            "tokenizer_name": lambda r: r["model"]["name_or_path"] == "meta-llama/Llama-3.1-8B",
            "dataset_mixer": lambda r: _hub_sources(r) == [("allenai/tulu-3-sft-mixture", None, "train", 1.0)],
            "with_tracking": lambda r: "wandb" in r["tracking"], "report_to": lambda r: "wandb" in r["tracking"],
            "checkpointing_steps": lambda r: r["trainer"]["save_strategy"] == "epoch",
        },
        different=("use_slow_tokenizer", "tokenizer_name", "dataset_mixer", "output_dir", "dataset_mix_dir",
                   "checkpointing_steps"),
    ),
    Published(
        "tulu3/dpo.yaml", OI[0], "configs/train_configs/tulu3/tulu3_dpo_8b.yaml", OI[1],
        world_size=8,  # "designed for 8 GPUs, so batch size 128"
        values={
            "model_name_or_path": "allenai/Llama-3.1-Tulu-3-8B-SFT", "model_revision": "main",
            "gradient_checkpointing": True, "dataset_mixer": {"allenai/llama-3.1-tulu-3-8b-preference-mixture": 1.0},
            "tokenizer_name": "allenai/Llama-3.1-Tulu-3-8B-SFT", "use_slow_tokenizer": True, "max_seq_length": 2048,
            "preprocessing_num_workers": 16, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 16,
            "learning_rate": 5.0e-7, "lr_scheduler_type": "linear", "warmup_ratio": 0.1, "weight_decay": 0.0,
            "num_epochs": 1, "output_dir": "output/dpo_8b", "with_tracking": True, "logging_steps": 1,
            "use_lora": False, "loss_type": "dpo_norm", "beta": 5, "checkpointing_steps": 1000,
        },
        checks={
            "tokenizer_name": lambda r: r["model"]["name_or_path"] == "allenai/Llama-3.1-Tulu-3-8B-SFT",
            "dataset_mixer": lambda r: _hub_sources(r) == [("allenai/llama-3.1-tulu-3-8b-preference-mixture", None,
                                                            "train", 1.0)],
            "max_seq_length": lambda r: r["trainer"]["max_length"] == 2048 and r["data"]["overlong"] == "truncate",
            "with_tracking": lambda r: "wandb" in r["tracking"], "use_lora": lambda r: r.get("peft") is None,
            "loss_type": lambda r: r["trainer"]["loss_type"] == ["sigmoid_norm"],
            "checkpointing_steps": lambda r: r["trainer"]["save_steps"] == 1000,
        },
        different=("use_slow_tokenizer", "tokenizer_name", "output_dir", "max_seq_length"),
    ),
    Published(
        "llama-factory/qwen3-lora-sft.yaml", LF[0], "examples/train_lora/qwen3_lora_sft.yaml", LF[1], world_size=1,
        values={**LF_COMMON, **LF_LORA, "stage": "sft", "dataset": "identity,alpaca_en_demo",
                "output_dir": "saves/qwen3-4b/lora/sft", "learning_rate": 1.0e-4},
        checks={**LF_CHECKS, "dataset": lambda r: [Path(s["path"]).name for s in r["data"]["train"]]
                == ["identity.json", "alpaca_en_demo.json"], "stage": lambda r: r["method"] == "sft"},
        different=(*LF_DIFFERENT, "max_samples"),
    ),
    Published(
        "llama-factory/qwen3-lora-dpo.yaml", LF[0], "examples/train_lora/qwen3_lora_dpo.yaml", LF[1], world_size=1,
        values={**LF_COMMON, **LF_LORA, "stage": "dpo", "pref_beta": 0.1, "pref_loss": "sigmoid",
                "dataset": "dpo_en_demo", "output_dir": "saves/qwen3-4b/lora/dpo", "learning_rate": 5.0e-6},
        checks={**LF_CHECKS, "dataset": lambda r: [Path(s["path"]).name for s in r["data"]["train"]]
                == ["dpo_en_demo.json"], "stage": lambda r: r["method"] == "dpo",
                "pref_loss": lambda r: r["trainer"]["loss_type"] == ["sigmoid"],
                "cutoff_len": lambda r: r["trainer"]["max_length"] == 2048 and r["data"]["overlong"] == "truncate"},
        different=(*LF_DIFFERENT, "max_samples", "cutoff_len"),
    ),
    Published(  # the KTO file was read at a later commit than the SFT and DPO ones (LF_KTO)
        "llama-factory/qwen3-lora-kto.yaml", LF[0], "examples/train_lora/qwen3_lora_kto.yaml", LF_KTO, world_size=1,
        values={**{k: v for k, v in LF_COMMON.items() if k not in ("save_only_model", "resume_from_checkpoint")},
                **LF_LORA, "stage": "kto", "pref_beta": 0.1, "dataset": "kto_en_demo",
                "output_dir": "saves/qwen3-4b/lora/kto", "learning_rate": 5.0e-6},
        checks={**LF_CHECKS, "dataset": lambda r: [Path(s["path"]).name for s in r["data"]["train"]]
                == ["kto_en_demo.json"], "stage": lambda r: r["method"] == "kto"},
        different=(*(k for k in LF_DIFFERENT if k != "resume_from_checkpoint"), "max_samples"),
    ),
    Published(
        "axolotl/llama-3.2-1b-lora.yaml", AX[0], "examples/llama-3/lora-1b.yml", AX[1], world_size=1,
        values={
            "base_model": "NousResearch/Llama-3.2-1B",
            "datasets": [{"path": "teknium/GPT4-LLM-Cleaned", "type": "alpaca"}], "val_set_size": 0.1,
            "output_dir": "./outputs/lora-out", "adapter": "lora", "lora_model_dir": None, "sequence_len": 2048,
            "sample_packing": True, "eval_sample_packing": True, "lora_r": 16, "lora_alpha": 32,
            "lora_dropout": 0.05,
            "lora_target_modules": ["gate_proj", "down_proj", "up_proj", "q_proj", "v_proj", "k_proj", "o_proj"],
            "wandb_project": None, "wandb_entity": None, "wandb_watch": None, "wandb_name": None,
            "wandb_log_model": None, "gradient_accumulation_steps": 2, "micro_batch_size": 2, "num_epochs": 1,
            "optimizer": "adamw_8bit", "lr_scheduler": "cosine", "learning_rate": 0.0002, "bf16": "auto",
            "tf32": False, "gradient_checkpointing": True, "resume_from_checkpoint": None, "logging_steps": 1,
            "attn_implementation": "flash_attention_2", "loss_watchdog_threshold": 5.0,
            "loss_watchdog_patience": 3, "warmup_ratio": 0.1, "evals_per_epoch": 4, "saves_per_epoch": 1,
            "weight_decay": 0.0, "special_tokens.pad_token": "<|end_of_text|>",
        },
        checks={
            "datasets": lambda r: _hub_sources(r) == [("teknium/GPT4-LLM-Cleaned", None, "train", 1.0)],
            "adapter": lambda r: r["peft"] is not None, "lora_model_dir": lambda r: True,
            "bf16": lambda r: r["trainer"]["bf16"] is True and r["model"]["dtype"] == "auto",
            "evals_per_epoch": lambda r: r["trainer"]["eval_strategy"] == "steps" and r["trainer"]["eval_steps"] == 0.25
            and r["trainer"]["num_train_epochs"] == 1,
            "saves_per_epoch": lambda r: r["trainer"]["save_strategy"] == "epoch",
            **{k: (lambda r: "tracking" not in r or not r["tracking"].get("wandb"))
               for k in ("wandb_project", "wandb_entity", "wandb_watch", "wandb_name", "wandb_log_model")},
        },
        different=("sample_packing", "loss_watchdog_threshold", "loss_watchdog_patience", "evals_per_epoch",
                   "output_dir", "resume_from_checkpoint", "bf16", "lora_model_dir"),
    ),    # issue 31: the methods posttrain did not ship before, from TRL's documented example commands
    *[Published(
        f"trl-examples/{method}-gpt2.yaml", "huggingface/trl", f"examples/scripts/{method}.py", commit, world_size=1,
        values={**TRL_PAIRWISE, "output_dir": f"gpt2-aligned-{method}", **dataset},
        checks={**TRL_PAIRWISE_CHECKS,
                **{key: (lambda r, hub=hub: _hub_sources(r) == [(hub, None, "train", 1.0)]) for key, hub in dataset.items()}},
        different=("output_dir",),
    ) for method, commit, dataset in (
        ("orpo", "21e977460b400555f60ac1dc540b2caab04a8610", {"dataset": "trl-internal-testing/hh-rlhf-helpful-base-trl-style"}),
        ("cpo", "7bcecc5d28a3e024e4418bf7d50664836166a620", {"dataset_name": "trl-lib/ultrafeedback_binarized"}),
    )],
    Published(
        "trl-examples/rloo-qwen3-numinamath.yaml", "huggingface/trl", "examples/scripts/rloo.py",
        "96b72316cfadbe8eb1117534c657317c9e51e857", world_size=8,
        values={"model": "Qwen/Qwen3-0.6B", "model_init_kwargs": {"dtype": "bfloat16"}, "learning_rate": 1e-5,
                "log_completions": True, "num_completions_to_print": 2, "max_completion_length": 1024,
                "gradient_accumulation_steps": 2, "steps_per_generation": 8, "use_vllm": True,
                "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.5, "output_dir": "Qwen3-0.6B-RLOO",
                "run_name": "Qwen3-0.6B-RLOO-NuminaMath-TIR", "reward_funcs": ["think_format_reward", "accuracy_reward"],
                "peft_config": "LoraConfig()", "train_dataset": ("AI-MO/NuminaMath-TIR", "train[:5%]"),
                "SYSTEM_PROMPT": RLOO_SYSTEM_PROMPT, "accelerate_config": "deepspeed_zero3.yaml"},
        checks={"model": lambda r: r["model"]["name_or_path"] == "Qwen/Qwen3-0.6B",
                "model_init_kwargs": lambda r: r["model"]["dtype"] == "bfloat16",
                "reward_funcs": lambda r: [(x["name"], x.get("answer_tag")) for x in r["rewards"]]
                == [("think_format", False), ("math", None)],
                "peft_config": lambda r: {k: r["peft"].get(k) for k in ("r", "lora_alpha", "lora_dropout")}
                == {"r": 8, "lora_alpha": 8, "lora_dropout": 0.0} and "target_modules" not in r["peft"],
                "train_dataset": lambda r: _hub_sources(r) == [("AI-MO/NuminaMath-TIR", None, "train[:5%]", 1.0)]
                and r["data"]["train"][0]["format"] == "math",
                "SYSTEM_PROMPT": lambda r: r["data"]["train"][0]["system_prompt"] == RLOO_SYSTEM_PROMPT,
                "accelerate_config": lambda r: r["launch"]["zero"] == 3},
        different=("output_dir", "run_name", "model_init_kwargs"),
    ),
    Published(
        "trl-examples/distillation-qwen2.5.yaml", "huggingface/trl", "examples/scripts/distillation.py",
        "f196f006122958a19101e5c3616d4efd1b6a2c90", world_size=1,
        values={"model_name_or_path": "Qwen/Qwen2.5-0.5B-Instruct",
                "teacher_model_name_or_path": "Qwen/Qwen2.5-1.5B-Instruct",
                "dataset_name": "trl-lib/chatbot_arena_completions", "learning_rate": 2e-5,
                "per_device_train_batch_size": 4, "gradient_accumulation_steps": 8, "lmbda": 0.5, "beta": 0.5,
                "output_dir": "distilled-model", "num_train_epochs": 1},
        checks={"teacher_model_name_or_path": lambda r: r["teacher"]["name_or_path"] == "Qwen/Qwen2.5-1.5B-Instruct",
                "dataset_name": lambda r: _hub_sources(r) == [("trl-lib/chatbot_arena_completions", None, "train", 1.0)]},
        different=("output_dir", "lmbda"),
    ),
    Published(
        "trl-examples/online-dpo-pythia-tldr.yaml", "huggingface/trl", "examples/scripts/dpo_online.py",
        "7bcecc5d28a3e024e4418bf7d50664836166a620", world_size=1,
        values={"model_name_or_path": "trl-lib/pythia-1b-deduped-tldr-sft",
                "reward_model_path": "trl-lib/pythia-1b-deduped-tldr-rm", "dataset_name": "trl-lib/tldr",
                "learning_rate": 5.0e-7, "output_dir": "pythia-1b-tldr-online-dpo", "per_device_train_batch_size": 8,
                "gradient_accumulation_steps": 16, "warmup_ratio": 0.1, "missing_eos_penalty": 1.0},
        checks={"reward_model_path": lambda r: [(x["name"], x.get("path"), x.get("weight", 1.0)) for x in r["rewards"]]
                == [("reward_model", "trl-lib/pythia-1b-deduped-tldr-rm", 1.0)],
                "dataset_name": lambda r: _hub_sources(r) == [("trl-lib/tldr", None, "train", 1.0)]},
        different=("output_dir",),
    ),
    Published(
        "trl-examples/gkd-qwen2.yaml", "huggingface/trl", "examples/scripts/gkd.py",
        "d56a0fcca5a335f89611555f4bf95ec5cf571215", world_size=1,
        values={"model_name_or_path": "Qwen/Qwen2-0.5B-Instruct", "teacher_model_name_or_path": "Qwen/Qwen2-1.5B-Instruct",
                "dataset_name": "trl-lib/chatbot_arena_completions", "learning_rate": 2e-5,
                "per_device_train_batch_size": 4, "gradient_accumulation_steps": 8, "output_dir": "gkd-model",
                "logging_steps": 10, "num_train_epochs": 1, "push_to_hub": True, "gradient_checkpointing": True},
        checks={"teacher_model_name_or_path": lambda r: r["teacher"]["name_or_path"] == "Qwen/Qwen2-1.5B-Instruct",
                "dataset_name": lambda r: _hub_sources(r) == [("trl-lib/chatbot_arena_completions", None, "train", 1.0)],
},
        different=("output_dir",),
    ),
]


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(autouse=True)
def llama_factory_data(monkeypatch):
    """LLaMA-Factory's recipes read its data/ directory; the fixtures stand in for it here."""
    monkeypatch.setenv("LLAMAFACTORY_DATA", str(REPO / "recipes" / "llama-factory" / "fixtures"))


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
