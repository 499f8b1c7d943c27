"""On-policy distillation over TRL's DistillationTrainer (Agarwal et al., 2024, arXiv 2306.13649;
Thinking Machines' on-policy distillation): the student samples completions of the prompts, and
its token distributions are trained towards the teacher's on them (trainer.beta chooses the
divergence: 0 forward KL, 1 reverse KL, 0.5 Jensen-Shannon). The teacher is the recipe's
`teacher:` block, loaded as the model block loads the student (a trained run's final/, a hub
name, a GGUF, tiny); it must share the student's vocabulary (TRL checks it).

    posttrain run recipes/distill/smoke.yaml

Prompts are `prompts` records; data, the prompt-length filter and the chat_template_kwargs are
rlvr's. The teacher runs where TRL's accelerator places it: the student's device (TRL 1.16 has
no separate teacher device, docs/recipes.md says why); under ZeRO-3 TRL shards it over the ranks
like the student, and `teacher_shard` prints each rank's share.
"""

from __future__ import annotations

from posttrain import models
from posttrain.recipe import LoadedRecipe
from posttrain.tiny import tiny_model_path
from posttrain.trainers import rlvr
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    return rlvr.rendering_arguments(loaded)


def data(context: Context) -> TrainData:
    return rlvr.data(context)


def teacher_path(loaded: LoadedRecipe) -> str:
    spec = loaded.spec.teacher
    if spec.name_or_path == "tiny":
        return str(tiny_model_path(spec.tiny))
    try:
        return models.local_model(spec.name_or_path, spec.gguf_file, spec.revision)
    except Exception as exc:  # noqa: BLE001 - UserError and hub errors alike: the key is named
        raise loaded.error(("teacher", "name_or_path"), str(exc)) from None


def load_teacher(context: Context):
    """The teacher as a frozen causal LM in eval mode, in the student's dtype unless its block says."""
    import torch

    from posttrain.errors import UserError

    loaded = context.loaded
    spec = loaded.spec.teacher
    dtype = ((torch.bfloat16 if context.device.bf16 else torch.float32) if spec.dtype == "auto"
             else getattr(torch, spec.dtype))
    try:
        teacher = models.load_pretrained("AutoModelForCausalLM", teacher_path(loaded), dtype=dtype,
                                         revision=spec.revision if spec.name_or_path != "tiny" else None)
    except UserError as exc:
        raise loaded.error(("teacher", "name_or_path"), str(exc)) from None
    teacher.requires_grad_(False)
    print(f"posttrain: teacher {spec.name_or_path}: {sum(p.numel() for p in teacher.parameters()):,} parameters")
    return teacher.eval()


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import DistillationTrainer

    rlvr.row_rendering(context, config)
    teacher = load_teacher(context)
    trainer = DistillationTrainer(model=context.model, teacher_model=teacher, args=config, train_dataset=data.train,
                                  eval_dataset=data.eval, processing_class=context.tokenizer,
                                  peft_config=context.peft_config, callbacks=callbacks)
    teacher_shard(trainer.teacher_model, trainer.accelerator.process_index)
    return trainer


def teacher_shard(teacher, rank: int) -> tuple[int, int] | None:
    """Under ZeRO-3 (DeepSpeed partitions each parameter; `ds_tensor` is this rank's part):
    print and return (elements held on this rank, elements in all), else None."""
    parameters = list(teacher.parameters())
    if not parameters or not all(hasattr(p, "ds_tensor") for p in parameters):
        return None
    held = sum(p.ds_tensor.numel() for p in parameters)
    total = sum(p.ds_numel for p in parameters)
    print(f"posttrain: teacher sharded by ZeRO-3: rank {rank} holds {held:,} of its {total:,} parameters", flush=True)
    return held, total
