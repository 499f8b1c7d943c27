"""On-policy distillation over TRL's DistillationTrainer (Agarwal et al., 2024, arXiv 2306.13649;
Thinking Machines' on-policy distillation): the student samples completions of the prompts, and
its token distributions are trained towards the teacher's on them (trainer.beta chooses the
divergence: 0 forward KL, 1 reverse KL, 0.5 Jensen-Shannon). The teacher is the recipe's
`teacher:` block, loaded as the model block loads the student (a trained run's final/, a hub
name, a GGUF, tiny); it must share the student's vocabulary (TRL checks it).

    posttrain run recipes/distill/smoke.yaml

Prompts are `prompts` records; data, the prompt-length filter and the chat_template_kwargs are
rlvr's. The teacher runs on the student's device, unless `teacher.device` gives its layers a
device of their own (one process: `teacher_device_map`); under ZeRO-3 TRL shards it over the
ranks like the student, and `teacher_shard` prints each rank's share.

Why the split keeps the teacher's embeddings and output layer on the student's device: TRL 1.16's
loss multiplies both models' last hidden states by both output layers chunk by chunk and refuses
output layers on two devices; it moves each model's hidden states to its head's device first, so
a teacher whose layers sit elsewhere is accepted. TRL also refuses one process that sees several
GPUs (it would wrap the student in nn.DataParallel): posttrain tells its Trainer there is one,
as transformers' Trainer itself does for a model split across devices.
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
    if spec.device is not None:
        teacher = place_teacher(loaded, teacher, "cuda:0" if context.device.cuda else "cpu", spec.device)
    return teacher.eval()


def teacher_device_map(teacher, student_device: str, teacher_device: str) -> dict[str, str]:
    """Module name -> device for a causal LM teacher: its input embeddings, its output layer and
    any other module outside the backbone on the student's device; every other module of the
    backbone (each decoder layer by itself, the final norm, the rotary embedding) on the
    teacher's. Tied embeddings share one device this way (tests/unit/test_teacher_device.py).
    """
    import torch

    backbone = teacher.get_decoder() if hasattr(teacher, "get_decoder") else teacher.base_model
    names = {module: name for name, module in teacher.named_modules()}
    prefix = names[backbone]
    embeddings = teacher.get_input_embeddings()
    placed: dict[str, str] = {}
    for name, child in teacher.named_children():
        if child is not backbone:
            placed[name] = student_device
    for name, child in backbone.named_children():
        full = f"{prefix}.{name}" if prefix else name
        if child is embeddings:
            placed[full] = student_device
        elif isinstance(child, torch.nn.ModuleList):
            for i in range(len(child)):
                placed[f"{full}.{i}"] = teacher_device
        else:
            placed[full] = teacher_device
    return placed


def place_teacher(loaded: LoadedRecipe, teacher, student_device: str, teacher_device: str):
    """The teacher dispatched by `teacher_device_map` (accelerate's hooks move each layer's
    inputs to its device); a device this machine lacks is an error naming teacher.device."""
    import torch
    from accelerate import dispatch_model

    if teacher_device.startswith("cuda"):
        index = int(teacher_device.split(":")[1])
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise loaded.error(("teacher", "device"), f"{teacher_device} is not on this machine "
                               f"({torch.cuda.device_count()} CUDA devices visible)")
    device_map = teacher_device_map(teacher, student_device, teacher_device)
    teacher = dispatch_model(teacher, device_map=device_map, main_device=student_device, force_hooks=True)
    layers = sum(p.numel() for p in teacher.parameters() if str(p.device) == teacher_device)
    print(f"posttrain: teacher layers on {teacher_device} ({layers:,} parameters); embeddings and output layer "
          f"on the student's {student_device}", flush=True)
    return teacher


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl import DistillationTrainer

    rlvr.row_rendering(context, config)
    teacher = load_teacher(context)
    one_student_device(context, config)
    trainer = DistillationTrainer(model=context.model, teacher_model=teacher, args=config, train_dataset=data.train,
                                  eval_dataset=data.eval, processing_class=context.tokenizer,
                                  peft_config=context.peft_config, callbacks=callbacks)
    teacher_shard(trainer.teacher_model, trainer.accelerator.process_index)
    return trainer


def one_student_device(context: Context, config) -> None:
    """With teacher.device, the one process sees a second GPU, for the teacher: the student is
    still trained on one device, not wrapped in nn.DataParallel (transformers' Trainer sets the
    same for a model split across devices)."""
    if context.loaded.spec.teacher is not None and context.loaded.spec.teacher.device is not None:
        config._setup_devices  # noqa: B018 - sets _n_gpu, which the next line overrides
        config._n_gpu = 1


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
