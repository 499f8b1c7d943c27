"""Issue 31: what users' data carries is read, passed on, or named; never dropped silently.

Each test here failed before: the shapes were refused (or lost a column), the rendering columns
never reached TRL, the options did not exist, or `validate` let the recipe through.
"""

import json
import math

import pytest

from posttrain.chat_templates import render, set_template_kwargs
from posttrain.data.loading import build_mixture, drop_long_prompts, load_source, uniform_template_kwargs
from posttrain.errors import DataError, RecipeError
from posttrain.recipe import DataSource, load_run
from posttrain.recipe.schema import RewardSpec, TinyModelSpec
from posttrain.rewards import REWARDS, build_reward_ref

# A template that switches on a keyword, as Qwen3's does on enable_thinking.
THINK_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think></think>{% endif %}{% endif %}"
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from posttrain.tiny import tiny_model_path

    tok = AutoTokenizer.from_pretrained(str(tiny_model_path(TinyModelSpec())))
    tok.chat_template = THINK_TEMPLATE
    return tok


# ----------------------------------------------------------------------------- shapes


def test_llama_factory_kto_rows_messages_and_label_are_read(tmp_path):
    conversation = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    path = write_jsonl(tmp_path / "kto.jsonl", [{"messages": conversation, "label": True},
                                                {"messages": conversation, "kto_tag": False}])
    records = load_source(DataSource(path=str(path)), "unpaired").records
    assert records[0] == {"prompt": conversation[:1], "completion": conversation[1:], "label": True}
    assert records[1]["label"] is False and "kto_tag" not in records[1]


def test_unpaired_conversation_must_end_with_the_rated_answer(tmp_path):
    path = write_jsonl(tmp_path / "kto.jsonl", [{"messages": [{"role": "user", "content": "hi"}], "label": True}])
    with pytest.raises(DataError, match=r"kto.jsonl:1: .*end with the assistant's turn"):
        load_source(DataSource(path=str(path)), "unpaired")


def test_axolotl_single_message_chosen_and_rejected_are_read(tmp_path):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    row = {"messages": messages, "chosen": {"role": "assistant", "content": "Paris"},
           "rejected": {"role": "assistant", "content": "Lyon"}}
    records = load_source(DataSource(path=str(write_jsonl(tmp_path / "p.jsonl", [row]))), "preference").records
    assert records[0] == {"prompt": messages, "chosen": [row["chosen"]], "rejected": [row["rejected"]]}


def test_verl_parquet_rows_load_with_nested_truth_and_data_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": "3+4? Put #### before it."}],
             "ability": "math", "reward_model": {"style": "rule", "ground_truth": "7"},
             "extra_info": {"split": "train", "index": 0}},
            {"data_source": "my/own", "prompt": [{"role": "user", "content": "x"}], "ability": "math",
             "reward_model": {"style": "rule", "ground_truth": "1"}, "extra_info": {"split": "train", "index": 1}}]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    records = load_source(DataSource(path=str(path)), "task").records
    assert records[0]["ground_truth"] == "7" and records[0]["verifier"] == "gsm8k"
    assert records[0]["data_source"] == "openai/gsm8k" and records[0]["extra_info"]["index"] == 0
    assert "verifier" not in records[1]  # an unknown source: the recipe's reward scores it
    # verl's GSM8K rule is strict: only `#### N` counts
    assert REWARDS["verifier"](["The answer is 7", "so\n#### 7"], verifier=["gsm8k"] * 2,
                               ground_truth=["7", "7"]) == [0.0, 1.0]


@pytest.mark.parametrize("row, expected_prompt", [
    ({"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}],
      "system": "You are terse."},
     [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "q"}]),
    ({"prompt": "q", "completion": "a", "system": "You are terse."},  # text: becomes chat so it renders
     [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "q"}]),
])
def test_a_system_column_becomes_the_system_turn(tmp_path, row, expected_prompt):
    records = load_source(DataSource(path=str(write_jsonl(tmp_path / "s.jsonl", [row]))), "sft").records
    assert records[0]["prompt"] == expected_prompt
    assert records[0]["completion"] == [{"role": "assistant", "content": "a"}]
    assert "system" not in records[0]


def test_a_system_column_that_contradicts_the_prompts_system_turn_is_an_error(tmp_path):
    row = {"prompt": [{"role": "system", "content": "A"}, {"role": "user", "content": "q"}], "completion": "a",
           "system": "B"}
    with pytest.raises(DataError, match="both a 'system' column and a different system turn"):
        load_source(DataSource(path=str(write_jsonl(tmp_path / "s.jsonl", [row]))), "sft")


def test_apply_chat_template_turns_text_pairs_into_chat_turns(tmp_path):
    path = write_jsonl(tmp_path / "rm.jsonl", [{"prompt": "q", "chosen": "good", "rejected": "bad"}])
    plain = load_source(DataSource(path=str(path)), "preference").records[0]
    chat = load_source(DataSource(path=str(path), apply_chat_template=True), "preference").records[0]
    assert plain["prompt"] == "q"
    assert chat == {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
                    "rejected": [{"role": "assistant", "content": "bad"}]}


# ----------------------------------------------------------------------------- columns


def test_unused_columns_are_named_once_in_the_log(tmp_path, capsys):
    rows = [{"prompt": "q", "completion": "a", "source": "web", "score": 3}] * 3
    records, _ = build_mixture([DataSource(path=str(write_jsonl(tmp_path / "d.jsonl", rows)))], "sft", 0)
    out = capsys.readouterr().out
    assert out.count("ignored columns: score, source") == 1
    assert set(records[0]) == {"prompt", "completion"}


def test_chat_template_kwargs_and_tools_are_passed_on_and_render_in_their_mode(tmp_path, tokenizer):
    from trl.data_utils import apply_chat_template

    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}]
    rows = [{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}],
             "chat_template_kwargs": {"enable_thinking": flag}, "tools": tools} for flag in (False, True)]
    records, _ = build_mixture([DataSource(path=str(write_jsonl(tmp_path / "d.jsonl", rows)))], "sft", 0)
    assert all(set(r) == {"prompt", "completion", "chat_template_kwargs", "tools"} for r in records)
    assert json.loads(records[0]["tools"]) == tools  # one Arrow type whatever the schemas hold
    by_mode = {r["chat_template_kwargs"]["enable_thinking"]: r for r in records}
    # what TRL's trainers do with a row: its chat_template_kwargs reach the template
    off = apply_chat_template({"prompt": by_mode[False]["prompt"]}, tokenizer,
                              **by_mode[False]["chat_template_kwargs"])["prompt"]
    on = apply_chat_template({"prompt": by_mode[True]["prompt"]}, tokenizer,
                             **by_mode[True]["chat_template_kwargs"])["prompt"]
    assert off.endswith("<think></think>") and not on.endswith("<think></think>")


def test_rows_with_different_template_keys_are_an_error(tmp_path):
    rows = [{"prompt": "q", "completion": "a", "chat_template_kwargs": {"enable_thinking": False}},
            {"prompt": "q", "completion": "a"}]
    with pytest.raises(DataError, match="every row must give the same keys"):
        build_mixture([DataSource(path=str(write_jsonl(tmp_path / "d.jsonl", rows)))], "sft", 0)


def test_rendering_columns_a_method_cannot_render_are_refused(tmp_path):
    steps = {"prompt": "q", "completions": ["s1"], "labels": [True], "chat_template_kwargs": {"x": 1}}
    with pytest.raises(DataError, match="not rendered with the chat template"):
        load_source(DataSource(path=str(write_jsonl(tmp_path / "s.jsonl", [steps]))), "steps")
    task = {"prompt": "q", "ground_truth": "1", "tools": []}
    with pytest.raises(DataError, match="same tools"):
        load_source(DataSource(path=str(write_jsonl(tmp_path / "t.jsonl", [task]))), "task")
    bad = {"prompt": "q", "completion": "a", "chat_template_kwargs": "enable_thinking=false"}
    with pytest.raises(DataError, match="must be a mapping"):
        load_source(DataSource(path=str(write_jsonl(tmp_path / "b.jsonl", [bad]))), "sft")


def test_generation_renders_one_mode_so_rows_must_agree():
    same = [{"chat_template_kwargs": {"enable_thinking": False}}] * 2
    assert uniform_template_kwargs(same, "data") == {"enable_thinking": False}
    assert uniform_template_kwargs([{}, {}], "data") == {}
    with pytest.raises(DataError, match="different chat_template_kwargs"):
        uniform_template_kwargs([{"chat_template_kwargs": {"enable_thinking": True}}, {}], "data")


def test_model_chat_template_kwargs_reach_every_rendering_and_rows_win(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    prompt = [{"role": "user", "content": "q"}]
    assert not render(tok, prompt, add_generation_prompt=True).endswith("<think></think>")
    set_template_kwargs(tok, {"enable_thinking": False})
    assert render(tok, prompt, add_generation_prompt=True).endswith("<think></think>")  # posttrain's sampling
    # TRL calls the tokenizer's own apply_chat_template; a row's kwargs come on top and win
    assert tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True).endswith("<think></think>")
    assert not tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True,
                                       enable_thinking=True).endswith("<think></think>")


def test_kto_keeps_a_pairs_rendering_columns_when_it_splits_it():
    from posttrain.trainers.kto import unpaired

    pair = {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}], "chat_template_kwargs": {"enable_thinking": False}}
    records, _ = unpaired([pair], 0)
    assert all(r["chat_template_kwargs"] == {"enable_thinking": False} for r in records)


def test_render_counts_tokens_not_fields(tokenizer):
    """transformers 5's apply_chat_template(tokenize=True) returns a BatchEncoding; DPO's overlong
    check took its len() (2 fields) for the length, so no chat pair was ever too long."""
    from posttrain.trainers.dpo import unusable_reason

    pair = {"prompt": [{"role": "user", "content": "word " * 50}], "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}
    assert len(render(tokenizer, pair["prompt"], tokenize=True)) > 50
    assert unusable_reason(pair, tokenizer, max_length=20) == "longer than max_length (20)"


def test_long_prompts_are_dropped_and_counted(tokenizer, capsys):
    records = [{"prompt": [{"role": "user", "content": "w " * n}], "ground_truth": "1"} for n in (2, 200, 3)]
    kept, dropped = drop_long_prompts(records, tokenizer, 64, "data.train")
    assert dropped == 1 and len(kept) == 2
    assert "dropped 1 of 3 prompts longer than data.max_prompt_length (64 tokens)" in capsys.readouterr().out
    with pytest.raises(DataError, match="every prompt is longer"):
        drop_long_prompts(records, tokenizer, 1, "data.train")


def test_gkd_drops_conversations_whose_prompt_is_too_long(tokenizer, capsys):
    """GKD's student answers a share of the conversations from every turn but the last: those
    prompts are what data.max_prompt_length bounds."""
    from posttrain.trainers.gkd import drop_long_conversations

    rows = [{"messages": [{"role": "user", "content": "w " * n}, {"role": "assistant", "content": "a " * 300}]}
            for n in (2, 200)]
    kept = drop_long_conversations(tokenizer, rows, 64, "data.train")
    assert kept == rows[:1]  # the long answer does not count, the long question does
    assert "data.train: dropped 1 of 2 prompts longer than data.max_prompt_length (64 tokens)" in capsys.readouterr().out
    assert drop_long_conversations(tokenizer, rows, None, "data.train") == rows


@pytest.mark.parametrize("text", [
    "method: gkd\nteacher: {name_or_path: tiny}\ndata:\n  train: [{task: arithmetic, n: 4}]\n  max_prompt_length: 64\n",
    "method: prm\ndata:\n  train: [{task: arithmetic, n: 4, traces: {kind: steps}, build_trees: {width: 2, depth: 2}}]\n"
    "  max_prompt_length: 64\n",
])
def test_the_prompt_filter_is_a_key_where_part_of_the_data_is_sampled(write_recipe, text):
    assert load_run(write_recipe(text)).spec.data.max_prompt_length == 64


# ----------------------------------------------------------------------------- rewards


def test_numeric_strict_reads_only_the_gsm8k_line():
    numeric = REWARDS["numeric"]
    completions = ["The answer is 18.", "Janet makes 18 dollars.\n#### 18", "#### 1,018", "18"]
    assert numeric(completions, ["18", "18", "1018", "18"]) == [1.0, 1.0, 1.0, 1.0]  # the default: the last number
    assert numeric(completions, ["18", "18", "1018", "18"], strict=True) == [0.0, 1.0, 1.0, 0.0]


def test_a_gated_reward_is_the_product_and_a_truncated_completion_gets_the_rule():
    ref = RewardSpec(name="numeric", gate="think_format", truncated=0.0)
    reward = build_reward_ref(ref, max_completion_length=5)
    completions = ["<think>2+2</think><answer>4</answer>", "Answer: 4", "<think>x</think><answer>5</answer>",
                   "<think>a</think><answer>4</answer>"]
    ids = [[1, 2], [1, 2], [1, 2], [1, 2, 3, 4, 5]]  # the last used the whole budget
    verifier = REWARDS["numeric"](completions, ["4"] * 4)
    gate = REWARDS["think_format"](completions)
    assert verifier == [1.0, 1.0, 0.0, 1.0] and gate == [1.0, 0.0, 1.0, 1.0]
    # by hand: 1x1, 1x0, 0x1, and the truncated one replaced by 0
    assert reward(completions, ground_truth=["4"] * 4, completion_ids=ids) == [1.0, 0.0, 0.0, 0.0]
    assert reward.__name__ == "numeric*think_format"
    penalty = build_reward_ref(RewardSpec(name="numeric", truncated=-1.0), max_completion_length=5)
    assert penalty(completions, ground_truth=["4"] * 4, completion_ids=ids) == [1.0, 1.0, 0.0, -1.0]


# ----------------------------------------------------------------------------- validate

RLVR = """\
method: rlvr
data:
  train:
    - {task: arithmetic, n: 16}
  eval_size: 4
rewards: [{name: numeric}]
batch: {per_device: 4}
"""


@pytest.mark.parametrize("text, key, fragment", [
    # issue 31: TRL refused this only at `run`, 25 s in
    (RLVR + "trainer: {num_generations: 4, eval_strategy: steps, eval_steps: 1, per_device_eval_batch_size: 6}\n",
     "trainer.per_device_eval_batch_size", "not a multiple of the generations per evaluation prompt (4"),
    (RLVR.replace("per_device: 4", "per_device: 16") + "trainer: {num_generations: 16, eval_strategy: steps, eval_steps: 1}\n",
     "trainer.num_generations_eval", "per_device_eval_batch_size 8 x world size 1 = 8"),
    (RLVR + "trainer: {num_generations: 4, generation_batch_size: 8, steps_per_generation: 2}\n",
     "trainer.steps_per_generation", "not both"),
    (RLVR + "trainer: {num_generations: 2, generation_batch_size: 6}\n", "trainer.generation_batch_size",
     "multiple of the global batch"),
    (RLVR + "trainer: {num_generations: 4, auto_find_batch_size: true}\n", "trainer.auto_find_batch_size",
     "split the groups"),
    (RLVR + "trainer: {num_generations: 4, chat_template_kwargs: {enable_thinking: false}}\n",
     "trainer.chat_template_kwargs", "model.chat_template_kwargs"),
    (RLVR + "trainer: {num_generations: 4}\neval_greedy: true\n", "eval_greedy", "eval_strategy"),
    (RLVR.replace("rewards: [{name: numeric}]", "rewards: [{name: numeric, gate: think_formt}]")
     + "trainer: {num_generations: 4}\n", "rewards.0.gate",
     "did you mean 'think_format'"),
    ("method: sft\ndata:\n  train: [{task: arithmetic, n: 4}]\n  max_prompt_length: 64\n", "data.max_prompt_length",
     "does not generate"),
    ("method: sft\ndata:\n  train: [{task: arithmetic, n: 4}]\neval_greedy: true\n", "eval_greedy", "rlvr"),
    # what DistillationConfig, GKDConfig and OnlineDPOConfig refuse (or only warn about) once built
    ("method: distill\nteacher: {name_or_path: tiny}\ndata:\n  train: [{task: arithmetic, n: 4}]\n"
     "trainer: {beta: 1.5}\n", "trainer.beta", "in [0, 1]"),
    ("method: gkd\nteacher: {name_or_path: tiny}\ndata:\n  train: [{task: arithmetic, n: 4}]\n"
     "trainer: {lmbda: -0.1}\n", "trainer.lmbda", "in [0, 1]"),
    ("method: distill\ndata:\n  train: [{task: arithmetic, n: 4}]\n", "teacher", "needs a teacher model"),
    ("method: online_dpo\nrewards: [{name: numeric}]\ndata:\n  train: [{task: arithmetic, n: 4}]\n"
     "trainer: {max_new_tokens: 600}\n", "trainer.max_new_tokens", "max_length (512)"),
    ("method: online_dpo\nrewards: [{name: numeric}]\ndata:\n  train: [{task: arithmetic, n: 4}]\n"
     "trainer: {reward_model_path: x}\n", "trainer.reward_model_path", "scores the pairs with its rewards"),
    ("method: orpo\ndata:\n  train: [{task: arithmetic_pairs, n: 4}]\nrun: {max_train_tokens: 1000}\n",
     "run.max_train_tokens", "does not count the tokens"),
    ("method: sft\nteacher: {name_or_path: tiny}\ndata:\n  train: [{task: arithmetic, n: 4}]\n", "teacher",
     "for method: distill or gkd"),
])
def test_validate_refuses_what_trl_would_refuse_at_run(write_recipe, text, key, fragment):
    with pytest.raises(RecipeError) as info:
        load_run(write_recipe(text))
    message = str(info.value)
    assert key in message and fragment in message, message


def test_recipes_using_the_new_keys_validate(write_recipe):
    loaded = load_run(write_recipe(
        "method: rlvr\ntrainer: {num_generations: 4, eval_strategy: steps, eval_steps: 1, num_generations_eval: 2}\n"
        "batch: {per_device: 4}\neval_greedy: true\nmodel: {chat_template_kwargs: {enable_thinking: false}}\n"
        "rewards: [{name: numeric, gate: think_format, truncated: 0.0}]\n"
        "data:\n  train: [{task: arithmetic, n: 16}]\n  eval_size: 4\n  max_prompt_length: 128\n"))
    assert loaded.spec.rewards[0].gate.name == "think_format" and loaded.spec.rewards[0].truncated == 0.0
    assert loaded.spec.model.chat_template_kwargs == {"enable_thinking": False}


# ----------------------------------------------------------------------------- template preflight

# R1-Zero's plain-text template: turns end with a newline, no special token.
PLAIN = ("{% for m in messages %}{{ m.role }}: {{ m.content }}\\n{% endfor %}"
         "{% if add_generation_prompt %}assistant:{% endif %}")


def test_the_template_preflight_knows_the_method(write_recipe):
    from posttrain.errors import UserError
    from posttrain.recipe import Device
    from posttrain.trainers.common import load_model_and_tokenizer

    device = Device(cuda=False, bf16=False)
    model = f'model: {{chat_template: "{PLAIN}"}}\n'
    rl = load_run(write_recipe(RLVR + "trainer: {num_generations: 4}\n" + model, "rl.yaml"))
    _, tok = load_model_and_tokenizer(rl, device)  # RL never templates an assistant turn: it passes
    assert tok.apply_chat_template([{"role": "user", "content": "q"}], tokenize=False,
                                   add_generation_prompt=True) == "user: q\nassistant:"
    sft = load_run(write_recipe("method: sft\ndata:\n  train: [{task: arithmetic, n: 4}]\n" + model, "sft.yaml"))
    with pytest.raises(UserError, match="holds no special token; the model could not learn where to stop"):
        load_model_and_tokenizer(sft, device)  # SFT and DPO keep today's check


# ----------------------------------------------------------------------------- KTO batch 1


def test_kto_with_batch_one_pairs_kl_completions_across_the_dataset(tmp_path):
    import math

    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    from posttrain.tiny import tiny_model_path
    from posttrain.trainers.kto import dataset_kl_class

    path = str(tiny_model_path(TinyModelSpec()))
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    rows = [{"prompt": [{"role": "user", "content": f"{i}+1?"}],
             "completion": [{"role": "assistant", "content": f"Answer: {i + 1}"}], "label": i % 2 == 0}
            for i in range(5)]
    config = KTOConfig(output_dir=str(tmp_path), per_device_train_batch_size=1, max_steps=2, use_cpu=True,
                       report_to=[], logging_steps=1, save_strategy="no", learning_rate=1e-4)
    with pytest.raises(ValueError, match="batch size must be > 1"):  # what TRL alone does
        KTOTrainer(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows), processing_class=tok)
    trainer = dataset_kl_class(KTOTrainer)(model=model, args=config, train_dataset=datasets.Dataset.from_list(rows),
                                           processing_class=tok)
    assert trainer.args.per_device_train_batch_size == 1 and trainer._train_batch_size == 1
    ids, kl = trainer.train_dataset["completion_ids"], trainer.train_dataset["KL_completion_ids"]
    assert [kl[i] for i in range(5)] == [ids[4], ids[0], ids[1], ids[2], ids[3]]  # rotated across all five
    trainer.train()
    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert len(logged) == 2 and all(math.isfinite(e["loss"]) for e in logged)


# ----------------------------------------------------------------------------- PRM data and settings


def test_prm_rows_with_no_steps_stop_the_run_or_are_skipped_and_counted(tmp_path, capsys):
    rows = [{"prompt": "q", "completions": ["a", "b"], "labels": [True, False]},
            {"prompt": "q2", "completions": [], "labels": []}]
    path = str(write_jsonl(tmp_path / "steps.jsonl", rows))
    with pytest.raises(DataError, match=r"steps.jsonl:2: 'completions' is empty.*empty_steps: skip"):
        load_source(DataSource(path=path), "steps")
    loaded = load_source(DataSource(path=path, empty_steps="skip"), "steps")
    assert len(loaded.records) == 1 and loaded.skipped == 1
    assert "skipped 1 records with no steps" in capsys.readouterr().out


def test_prm_disable_dropout_turns_every_dropout_off():
    import torch

    from posttrain.trainers.prm import disable_dropout
    from posttrain.trainers.prm_config import PRMConfig

    assert PRMConfig(output_dir="x").disable_dropout is True  # TRL's former PRMConfig default
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1), torch.nn.Dropout(0.0))
    assert disable_dropout(model) == 1
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))


# ----------------------------------------------------------------------------- plan


def test_plan_counts_the_distillation_teachers_memory():
    from posttrain.launch.plan import ModelSize, Workload, model_states_per_gpu

    size = ModelSize(parameters=1_000_000, largest_layer=100_000, layers=4, hidden=128, vocab=320)
    alone = model_states_per_gpu(size, 0, 1)
    with_teacher = model_states_per_gpu(size, 0, 1, work=Workload(teacher=7_000_000))
    assert with_teacher - alone == 2 * 7_000_000  # 16-bit weights
    assert model_states_per_gpu(size, 3, 8, work=Workload(teacher=8_000_000)) - model_states_per_gpu(size, 3, 8) \
        == 2 * 8_000_000 // 8  # sharded under ZeRO-3


def test_plan_names_the_teacher(write_recipe, capsys):
    from posttrain.cli import main

    path = write_recipe("method: distill\nmodel: {name_or_path: tiny}\n"
                        "teacher: {name_or_path: tiny, tiny: {hidden_size: 256, num_layers: 8}}\n"
                        "data:\n  train: [{task: arithmetic, n: 16}]\n")
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert "a frozen 0.005 B teacher" in out and "sequence = prompt" in out
    # teacher.device: only the teacher's embeddings and output layer count on the student's GPU
    path = write_recipe(path.read_text().replace("num_layers: 8}", "num_layers: 8}, device: 'cuda:1'"))
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    from posttrain.launch.plan import model_size
    from posttrain.tiny import tiny_config
    from posttrain.recipe.schema import TinyModelSpec

    config = tiny_config(TinyModelSpec(hidden_size=256, num_layers=8))
    size = model_size(config)
    kept = size.vocab * 256 * (1 if config.tie_word_embeddings else 2)
    assert f"its layers on cuda:1 ({(size.parameters - kept) / 1e6:,.1f} M parameters)" in out
    assert f"its embeddings and output layer ({kept / 1e6:,.1f} M) on the student's" in out


# ----------------------------------------------------------------------------- PRM as a language model


@pytest.fixture(scope="module")
def lm_prm(tmp_path_factory):
    """The tiny causal LM saved as a PRM with head causal_lm (prm.json, as trainers/prm.py writes)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.tiny import tiny_model_path

    base = str(tiny_model_path(TinyModelSpec()))
    path = tmp_path_factory.mktemp("lm-prm")
    model = AutoModelForCausalLM.from_pretrained(base)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(base).save_pretrained(path)
    (path / "prm.json").write_text(json.dumps({"head": "causal_lm", "positive_token": "+", "negative_token": "-"}))
    return str(path), model.eval()


def test_a_causal_lm_prm_scores_each_step_by_its_positive_token_against_a_hand_computation(lm_prm):
    import torch
    from transformers import AutoTokenizer

    from posttrain.rewards.model_reward import load_verifier_model

    path, model = lm_prm
    load_verifier_model.cache_clear()
    tok = AutoTokenizer.from_pretrained(path)
    prompt, steps = "Compute 2 + 3 + 4.", ["2 + 3 = 5", "5 + 4 = 9", "Answer: 9"]
    # by hand: BOS + prompt, each step followed by "\n"; the score is read at each "\n"
    ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False).input_ids]
    positions = []
    for step in steps:
        ids += tok(step, add_special_tokens=False).input_ids + tok("\n", add_special_tokens=False).input_ids
        positions.append(len(ids) - 1)
    plus, minus = tok("+", add_special_tokens=False).input_ids[0], tok("-", add_special_tokens=False).input_ids[0]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    by_hand = [math.exp(logits[p, plus]) / (math.exp(logits[p, plus]) + math.exp(logits[p, minus])) for p in positions]
    got = REWARDS["reward_model"](["\n".join(steps)], prompts=[prompt], path=path, aggregate="min", device="cpu")
    assert got[0] == pytest.approx(min(by_hand), rel=1e-5)
    last = REWARDS["reward_model"](["\n".join(steps)], prompts=[prompt], path=path, aggregate="last", device="cpu")
    assert last[0] == pytest.approx(by_hand[-1], rel=1e-5)
    # Math-Shepherd-style tokens given as options work on a causal LM without prm.json too
    load_verifier_model.cache_clear()
    swapped = REWARDS["reward_model"](["\n".join(steps)], prompts=[prompt], path=path, aggregate="last", device="cpu",
                                      positive_token="-", negative_token="+")
    assert swapped[0] == pytest.approx(1 - by_hand[-1], rel=1e-5)


def test_the_two_token_loss_is_the_cross_entropy_of_the_two_logits():
    import torch

    from posttrain.trainers.prm import IGNORE, two_token_loss

    logits = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [1.0, 0.5, -1.0, 0.0], [2.0, 2.0, 2.0, 2.0]]])
    labels = torch.tensor([[1, IGNORE, 0]])  # a correct step at 0, an incorrect one at 2
    candidates = [1, 3]  # [negative, positive]
    # by hand: position 0 wants the positive (index 3): -log(e^3 / (e^1 + e^3)); position 2 the negative: -log(1/2)
    expected = (-math.log(math.exp(3) / (math.exp(1) + math.exp(3))) + math.log(2)) / 2
    assert two_token_loss(logits, labels, candidates).item() == pytest.approx(expected, rel=1e-6)


def test_prm_head_options_are_checked(write_recipe):
    base = "method: prm\ndata:\n  train: [{task: arithmetic_trees, n: 4, traces: {kind: steps}}]\n"
    with pytest.raises(RecipeError, match="trainer.head: head is 'lm'"):
        load_run(write_recipe(base + "trainer: {head: lm}\n"))
    with pytest.raises(RecipeError, match="must differ"):
        load_run(write_recipe(base + "trainer: {head: causal_lm, positive_token: x, negative_token: x}\n"))
    with pytest.raises(RecipeError, match="trainer.step_tag: step_tag .* must begin step_separator"):
        load_run(write_recipe(base + "trainer: {head: causal_lm, step_tag: \" ки\"}\n"))
    assert load_run(write_recipe(base + "trainer: {head: causal_lm}\n")).spec.trainer["head"] == "causal_lm"


def test_a_step_tag_puts_the_label_on_the_tag_with_the_rest_of_the_separator_after_it(tokenizer):
    from posttrain.rewards.model_reward import encode

    ids, positions = encode(tokenizer, "Q", ["a", "b"], separator=" ки\n", tag=" ки")
    tag = tokenizer(" ки", add_special_tokens=False).input_ids
    newline = tokenizer("\n", add_special_tokens=False).input_ids
    for p in positions:  # each label on the tag's last token, the newline right after it
        assert ids[p] == tag[-1] and ids[p + 1: p + 1 + len(newline)] == newline
    plain, plain_positions = encode(tokenizer, "Q", ["a", "b"], separator=" ки\n")
    assert plain == ids and [p + len(newline) for p in positions] == plain_positions
    with pytest.raises(ValueError, match="must begin step_separator"):
        encode(tokenizer, "Q", ["a"], separator="\n", tag=" ки")


def test_on_policy_pairs_are_sampled_and_trained_in_the_rows_rendering_mode(tokenizer, monkeypatch):
    """Sampling renders with the rows' chat_template_kwargs, and the pairs carry them to DPO."""
    import copy

    from posttrain.data import onpolicy
    from posttrain.recipe.schema import OnPolicySpec

    from posttrain.sampling import Engine

    tok = copy.deepcopy(tokenizer)
    seen = []

    class Rendering(Engine):  # an engine that records what generation would render
        def generate(self, prompts, n, sampling, prefixes=None, **options):
            seen.append(tok.apply_chat_template(prompts[0], tokenize=False, add_generation_prompt=True))
            return [["Answer: 1", "Answer: 2"] for _ in prompts]

    records = [{"prompt": [{"role": "user", "content": "1?"}], "ground_truth": "1",
                "chat_template_kwargs": {"enable_thinking": False}}]
    pairs, _ = onpolicy.sample_pairs(Rendering(), tok, records, OnPolicySpec(samples=2, reward="numeric"))
    assert seen[0].endswith("<think></think>")  # rendered in the rows' mode
    assert pairs[0]["chat_template_kwargs"] == {"enable_thinking": False}
    assert not tok.apply_chat_template(records[0]["prompt"], tokenize=False,
                                       add_generation_prompt=True).endswith("<think></think>")  # restored after


def test_evaluation_renders_in_the_eval_rows_mode_and_refuses_mixed_ones(tokenizer, write_recipe):
    import copy

    from posttrain.runs import _rows_template_kwargs

    loaded = load_run(write_recipe("method: sft\nmodel: {chat_template_kwargs: {other: 1}}\n"
                                   "data:\n  train: [{task: arithmetic, n: 4}]\n"))
    prompt = [{"role": "user", "content": "q"}]
    rows = {"a": [{"prompt": prompt, "chat_template_kwargs": {"enable_thinking": False}}]}
    tok = _rows_template_kwargs(loaded, copy.deepcopy(tokenizer), rows)
    assert render(tok, prompt, add_generation_prompt=True).endswith("<think></think>")
    from posttrain.chat_templates import template_kwargs

    assert template_kwargs(tok) == {"other": 1, "enable_thinking": False}  # the model's, with the rows' on top
    rows["b"] = [{"prompt": prompt}]
    with pytest.raises(DataError, match="eval.data: rows give different chat_template_kwargs"):
        _rows_template_kwargs(loaded, copy.deepcopy(tokenizer), rows)


# ----------------------------------------------------------------------------- greedy GRPO evaluation


def test_greedy_evaluation_swaps_the_generation_config_only_while_evaluating():
    from transformers import GenerationConfig

    from posttrain.trainers.rlvr import greedy_eval_class

    class Probe:  # stands in for GRPOTrainer: what generation would use during evaluate
        def __init__(self):
            self.generation_kwargs = {"max_new_tokens": 8, "do_sample": True, "temperature": 1.0, "top_p": 0.9,
                                      "top_k": 0, "min_p": None, "pad_token_id": 0}
            self.generation_config = GenerationConfig(**self.generation_kwargs)

        def evaluate(self, *args, **kwargs):
            return {"do_sample": self.generation_config.do_sample, "kwargs": dict(self.generation_kwargs)}

    trainer = greedy_eval_class(Probe)()
    seen = trainer.evaluate()
    assert seen["do_sample"] is False and seen["kwargs"]["do_sample"] is False
    assert seen["kwargs"]["temperature"] is None and seen["kwargs"]["max_new_tokens"] == 8
    assert trainer.generation_config.do_sample is True and trainer.generation_kwargs["temperature"] == 1.0  # restored
