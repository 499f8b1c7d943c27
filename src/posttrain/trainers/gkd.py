"""Generalised knowledge distillation over TRL's GKDTrainer (Agarwal et al., 2024, arXiv
2306.13649), which TRL keeps in `trl.experimental.gkd`: SFT conversations, of which a fraction
`lmbda` is answered by the student itself (on-policy) and the rest taken as written, trained
towards the teacher's token distributions (`beta`: the generalised Jensen-Shannon divergence's
interpolation, 0 forward KL, 1 reverse KL; `seq_kd`: sequence-level KD on the teacher's own
answers). The teacher is the recipe's `teacher:` block, as for `distill`.

    posttrain run recipes/trl-examples/smoke-gkd-qwen2.yaml

Records are SFT records (every shape SFT reads); GKD's collator reads conversations, so
prompt/completion records are joined into `messages`. Its collator renders each conversation
with the tokenizer alone, so rows' `chat_template_kwargs` must agree (they then apply to the
run), and a `tools` column is refused.
"""

from __future__ import annotations

from posttrain.errors import UserError
from posttrain.data.loading import apply_rows_template_kwargs, drop_long_prompts, to_dataset
from posttrain.recipe import LoadedRecipe
from posttrain.trainers import sft
from posttrain.trainers.distill import load_teacher, one_student_device, teacher_shard
from posttrain.trainers.skeleton import Context, TrainData


def own_arguments(loaded: LoadedRecipe) -> dict:
    """What GKDTrainer sets on its config itself (its collator reads the raw conversations), set
    here so that recipe.resolved.yaml records what the trainer ran with."""
    return {"remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}}


def as_conversation(record: dict) -> dict:
    """A record as GKD's ChatML collator reads it: `messages` (the rendering columns kept)."""
    if record.get("loss_mask"):
        raise UserError("GKD trains on whole conversations: journey traces with traces.mask are not supported")
    if "messages" in record:
        messages = record["messages"]
    else:
        prompt, completion = record["prompt"], record["completion"]
        prompt = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        completion = completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]
        messages = [*prompt, *completion]
    if record.get("tools") is not None:
        raise UserError("GKD's collator renders conversations without tools: remove the 'tools' column")
    return {"messages": messages}


def drop_long_conversations(tokenizer, rows: list[dict], limit: int | None, where: str) -> list[dict]:
    """The conversations whose prompt (every turn but the last) fits data.max_prompt_length."""
    kept, _ = drop_long_prompts([{"prompt": r["messages"][:-1], "row": r} for r in rows], tokenizer, limit, where)
    return [k["row"] for k in kept]


def data(context: Context) -> TrainData:
    train, evaluation, fingerprints = sft.sft_data(context.loaded, context.data_seed, context.data_kind)
    fingerprints.pop("_traces", None)
    # GKD's collator renders every row with the tokenizer's own template call: one mode per run
    merged = apply_rows_template_kwargs(context.tokenizer, train + (evaluation or []), "data",
                                        context.loaded.spec.model.chat_template_kwargs)
    if merged:
        print(f"posttrain: conversations are rendered with the rows' chat_template_kwargs {merged}")
    train = [as_conversation(r) for r in train]
    evaluation = [as_conversation(r) for r in evaluation] if evaluation else None
    # the student answers a share (lmbda) of the conversations from their prompts: all turns but the last
    limit = context.loaded.spec.data.max_prompt_length
    train = drop_long_conversations(context.tokenizer, train, limit, "data.train")
    evaluation = evaluation and drop_long_conversations(context.tokenizer, evaluation, limit, "data.eval")
    return TrainData(to_dataset(train), evaluation and to_dataset(evaluation), fingerprints)


def build(context: Context, config, data: TrainData, callbacks: list):
    from trl.experimental.gkd import GKDTrainer

    teacher = load_teacher(context)
    one_student_device(context, config)
    trainer = GKDTrainer(model=context.model, teacher_model=teacher, args=config, train_dataset=data.train,
                         eval_dataset=data.eval, processing_class=context.tokenizer, peft_config=context.peft_config,
                         callbacks=callbacks)
    teacher_shard(trainer.teacher_model, trainer.accelerator.process_index)
    return trainer
