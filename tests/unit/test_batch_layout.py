"""The Countdown recipes train phase 2 with 4 records per forward pass and 8 accumulated per
optimizer step, for less padding on long, uneven journey traces. That is only a fair stand-in for
32 at once if the loss is the same: the token mean over the whole step, not a mean of 8
micro-batch means. Checked here on the real TRL SFTTrainer: one SGD step (so the update is the
gradient itself, not Adam's sign-like first step) from the same tiny model on the same 32
records gives the same weights either way. (Length-grouped batches are not a stand-in: they change
which records share a step, so a step of short records weighs each of its tokens more.)"""

from datasets import Dataset

from posttrain.recipe.schema import TinyModelSpec

SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)


def _records():
    from posttrain.data.trees import TraceOptions, build_traces
    from posttrain.tasks import generate

    trees = generate("countdown_search_trees", 32, "train", 1, count=3, max_number=10, max_target=50,
                     use_all=True, max_nodes=16, question="Make {target} from {numbers}.")
    options = TraceOptions(journey="search", reflection="Wait, {critique}", backtrack="Let me go back.")
    records = build_traces(trees, "journey", seed=0, options=options)[0]
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in records]


def _one_step(tmp_path, records, per_device, accumulation):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from posttrain.tiny import tiny_model_path

    path = tiny_model_path(SPEC)
    model = AutoModelForCausalLM.from_pretrained(path)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = SFTConfig(output_dir=str(tmp_path / f"{per_device}x{accumulation}"), max_steps=1, learning_rate=1.0,
                       optim="sgd", lr_scheduler_type="constant", per_device_train_batch_size=per_device,
                       gradient_accumulation_steps=accumulation, report_to=[], save_strategy="no",
                       disable_tqdm=True, use_cpu=True, seed=0, max_grad_norm=0.0)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                         processing_class=AutoTokenizer.from_pretrained(path))
    trainer.train()
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def test_accumulated_micro_batches_take_the_same_step_as_one_batch(tmp_path):
    records = _records()
    lengths = [len(r["completion"][0]["content"]) for r in records]
    assert max(lengths) > 4 * min(lengths)  # uneven: what makes padding expensive
    whole = _one_step(tmp_path, records, 32, 1)
    for per_device, accumulation in ((4, 8),):
        split = _one_step(tmp_path, records, per_device, accumulation)
        for name, delta in whole.items():  # float sums in another order: ~0.2 % measured
            assert (split[name] - delta).norm() <= 0.01 * delta.norm(), name
    # what the check tells apart: the same records in another micro-batch order weigh the same,
    # a step over half of them does not
    half = _one_step(tmp_path, records[:16], 4, 4)
    assert max(((half[n] - d).norm() / d.norm()).item() for n, d in whole.items()) > 0.1
