"""`posttrain plan`: per-GPU memory for a recipe under each ZeRO stage, and a recommendation.

Model states use DeepSpeed's accounting for mixed-precision Adam, in bytes per parameter:
16-bit weights 2, and 18 more (16-bit gradients 2, fp32 gradients 4, fp32 master weights 4,
Adam moments 8). ZeRO-1 partitions the fp32 master weights and moments, ZeRO-2 also the
gradients, ZeRO-3 also the weights (keeping the largest layer whole while it computes); offload
moves the partitioned states to CPU. For ZeRO-2 and ZeRO-3 these are exactly DeepSpeed's own
`estimate_zero{2,3}_model_states_mem_needs` (a test checks it).

Activations are estimated per layer as 34 x sequence x batch x hidden bytes (Korthikanti et al.
2022, without the attention-score term that fused attention kernels do not store), all layers
without activation checkpointing, one layer plus each layer's 2-byte input with it; fp32 logits
(batch x sequence x vocab x 4) come on top. An estimate, not a measurement: leave headroom.

What the recipe trains changes the count (`Workload`): with LoRA only the adapter's parameters
carry gradients and optimizer states, and the frozen base weights cost 2 bytes each (16-bit), 1
(8-bit) or about 0.56 (4-bit NF4/FP4 with fp32 block constants; 0.52 with double quant) in the
quantized linear layers; DPO, KTO and online DPO without LoRA, and GRPO and RLOO with beta > 0
without LoRA, hold a frozen reference copy (16-bit weights, sharded under ZeRO-3); distillation
holds its teacher the same way (its own parameter count); the methods that generate train on
prompt + completion;
colocated vLLM takes `vllm_gpu_memory_utilization` of each GPU first. The options are the layouts
a recipe can ask for (`launch.zero` 0-3, ZeRO-3 with offload).
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
WEIGHT_BYTES, STATE_BYTES = 2, 18  # per parameter; STATE_BYTES = 2 + 4 + 4 + 8


QUANTIZED_BYTES = {8: 1.0, 4: 0.5 + 4 / 64}  # per weight: 8-bit; 4-bit plus an fp32 constant per 64-block
DOUBLE_QUANT_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit with 8-bit constants (and fp32 ones per 256)


@dataclass
class ModelSize:
    parameters: int
    largest_layer: int  # parameters of the largest single module (ZeRO-3 gathers it whole)
    layers: int
    hidden: int
    vocab: int
    linear: int = 0  # parameters in the linear layers of the blocks (what LoRA and quantization touch)
    linear_shapes: tuple = ()  # (name, in_features, out_features) of those layers


@dataclass
class Workload:
    """What a recipe trains, as far as memory goes (full fine-tuning by default)."""

    trainable: int | None = None  # parameters with gradients and optimizer states (None: all)
    frozen_linear_bytes: float = WEIGHT_BYTES  # per frozen linear-layer weight (16-bit, 8-bit, 4-bit)
    reference: bool = False  # a frozen 16-bit reference copy of the model
    reserved_fraction: float = 0.0  # of each GPU taken before training (colocated vLLM)
    teacher: int = 0  # parameters of a frozen 16-bit teacher (distillation), sharded under ZeRO-3


def model_size(config) -> ModelSize:
    """Count parameters by building the model on the meta device: no memory, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    unique = {id(p): p.numel() for p in model.parameters()}  # tied weights count once
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    output = model.get_output_embeddings()
    shapes = tuple((name, m.in_features, m.out_features) for name, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not output)
    return ModelSize(sum(unique.values()), largest, config.num_hidden_layers, config.hidden_size, config.vocab_size,
                     sum(i * o for _, i, o in shapes), shapes)


def lora_parameters(size: ModelSize, r: int, targets) -> int:
    """Parameters of LoRA adapters of rank r on the targeted linear layers: r x (in + out) each.
    `targets`: "all-linear" or module names (matched on the last part of the name, as peft does)."""
    names = None if targets in (None, "all-linear") else ({targets} if isinstance(targets, str) else set(targets))
    return sum(r * (i + o) for name, i, o in size.linear_shapes
               if names is None or name.rpartition(".")[2] in names)


def model_states_per_gpu(size: ModelSize, stage: int, gpus: int, offload: bool = False,
                         work: Workload | None = None) -> int:
    """Bytes of weights, gradients and optimizer states on each GPU."""
    work = work or Workload()
    if work.trainable is None and work.frozen_linear_bytes == WEIGHT_BYTES and not work.reference and not work.teacher:
        return _full_states(size.parameters, size.largest_layer, stage, gpus, offload)
    trainable = size.parameters if work.trainable is None else work.trainable
    frozen_weights = 0.0
    if work.trainable is not None:  # LoRA: the base is frozen; its linear layers may be quantized
        frozen_weights = size.linear * work.frozen_linear_bytes + (size.parameters - size.linear) * WEIGHT_BYTES
    reference = WEIGHT_BYTES * size.parameters if work.reference else 0
    reference += WEIGHT_BYTES * work.teacher  # TRL prepares the teacher as it does a reference model
    if stage == 3:  # frozen weights are sharded like the trained ones (offloaded with them)
        frozen_weights = 0 if offload else frozen_weights / gpus
        reference = reference / gpus
    states = _full_states(trainable, min(size.largest_layer, trainable), stage, gpus, offload)
    return int(states + frozen_weights + reference)


def _full_states(p: int, largest_layer: int, stage: int, gpus: int, offload: bool) -> int:
    if stage == 0:
        return (WEIGHT_BYTES + STATE_BYTES) * p
    if stage == 1:  # fp32 master weights and moments (12 bytes) partitioned
        return WEIGHT_BYTES * p + 6 * p + int(12 * p / gpus)
    if stage == 2:
        return WEIGHT_BYTES * p if offload else WEIGHT_BYTES * p + int(STATE_BYTES * p / gpus)
    largest = 4 * largest_layer
    return largest if offload else largest + int(STATE_BYTES * p / gpus)


def activations_per_gpu(size: ModelSize, batch: int, sequence: int, checkpointing: bool) -> int:
    per_layer = 34 * sequence * batch * size.hidden
    layers = per_layer + 2 * sequence * batch * size.hidden * size.layers if checkpointing else per_layer * size.layers
    return layers + 4 * batch * sequence * size.vocab


# The layouts a recipe can ask for: launch.zero 0-3, and offload with zero 3 only.
OPTIONS = [("ddp", 0, False), ("zero1", 1, False), ("zero2", 2, False), ("zero3", 3, False), ("zero3-offload", 3, True)]


def plan(size: ModelSize, gpus: int, batch: int, sequence: int, checkpointing: bool, gpu_memory_gib: float,
         work: Workload | None = None, quantized: bool = False) -> dict:
    """Estimates for every option, and the simplest one that fits with 10 % headroom (of what
    colocated vLLM leaves). Quantized weights cannot be sharded by ZeRO-3 here (check.py)."""
    work = work or Workload()
    activations = activations_per_gpu(size, batch, sequence, checkpointing)
    rows = []
    for name, stage, offload in OPTIONS:
        if quantized and stage == 3:
            continue
        states = model_states_per_gpu(size, stage, gpus, offload, work)
        rows.append({"option": name, "model_states_gib": states / GIB, "activations_gib": activations / GIB,
                     "total_gib": (states + activations) / GIB})
    usable = gpu_memory_gib * (1 - work.reserved_fraction)
    fits = [r for r in rows if r["total_gib"] <= 0.9 * usable]
    return {"parameters": size.parameters, "gpus": gpus, "rows": rows,
            "recommended": fits[0]["option"] if fits else None}
