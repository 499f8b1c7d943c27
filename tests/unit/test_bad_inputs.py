"""Bad input, as a careless user writes it: every bad recipe and every bad data file below ends in
exit code 2 and one line that names the key, or the file and line, without a traceback."""

import json
from pathlib import Path

import pytest

from posttrain.cli import main
from tests.unit.test_recipe_errors import BAD_RECIPES, GOOD

RLVR = "method: rlvr\ndata:\n  train:\n    - {task: arithmetic, n: 8}\nrewards: [{name: numeric}]\nbatch: {per_device: 8}\n"
PIPELINE = "stages:\n  - {name: a, method: sft, data: {train: [{task: arithmetic}]}}\n"
EXPERIMENT = (Path(__file__).resolve().parents[2] / "recipes/quickstart/journey-vs-shortcut.yaml").read_text()
EVAL = "eval:\n  data: [{task: arithmetic, split: heldout, n: 2}]\n"

# (name, recipe text (bytes allowed), the key (or file:line) the one error line must name)
MORE_BAD_RECIPES = [
    ("negative learning rate", GOOD + "trainer: {learning_rate: -1.0e-3}\n", "trainer.learning_rate: must be a positive"),
    ("zero learning rate", GOOD + "trainer: {learning_rate: 0.0}\n", "trainer.learning_rate: must be a positive"),
    ("NaN learning rate", GOOD + "trainer: {learning_rate: .nan}\n", "trainer.learning_rate: nan is not a finite"),
    ("infinite learning rate", GOOD + "trainer: {learning_rate: .inf}\n", "trainer.learning_rate: inf is not a finite"),
    ("quoted learning rate", GOOD + "trainer: {learning_rate: \"1e-3\"}\n", "trainer.learning_rate: expected float"),
    ("negative epochs", GOOD + "trainer: {num_train_epochs: -1}\n", "trainer.num_train_epochs: must be a positive"),
    ("zero max_steps", GOOD + "trainer: {max_steps: 0}\n", "trainer.max_steps: must be a positive number of steps"),
    ("negative warmup", GOOD + "trainer: {warmup_steps: -5}\n", "trainer.warmup_steps: must be 0 or more"),
    ("negative weight decay", GOOD + "trainer: {weight_decay: -0.1}\n", "trainer.weight_decay: must be 0 or more"),
    ("zero logging steps", GOOD + "trainer: {logging_steps: 0}\n", "trainer.logging_steps: must be a positive"),
    ("negative seed", GOOD + "trainer: {seed: -3}\n", "trainer.seed: must be in [0, 2**32)"),
    ("unknown scheduler", GOOD + "trainer: {lr_scheduler_type: cosin}\n", "trainer.lr_scheduler_type: unknown scheduler 'cosin'; did you mean 'cosine'"),
    ("LoRA rank 0", GOOD + "peft: {r: 0}\n", "peft.r: must be a positive rank"),
    ("LoRA dropout over 1", GOOD + "peft: {r: 8, lora_dropout: 1.5}\n", "peft.lora_dropout: must be in [0, 1)"),
    ("negative LoRA alpha", GOOD + "peft: {r: 8, lora_alpha: -16}\n", "peft.lora_alpha: must be a positive"),
    ("reward option of the wrong type", RLVR.replace("{name: numeric}", "{name: math, timeout: fast}"),
     "rewards.0.timeout: reward 'math' takes timeout as float"),
    ("unknown reward option", RLVR.replace("{name: numeric}", "{name: numeric, bogus: 1}"), "rewards.0.bogus: reward 'numeric' has no option"),
    ("unknown reward", RLVR.replace("{name: numeric}", "{name: numerik}"), "rewards.0.name: unknown reward 'numerik'"),
    ("rewards for sft", GOOD + "rewards: [{name: numeric}]\n", "rewards: rewards are used for method: rlvr"),
    ("no rewards for rlvr", RLVR.replace("rewards: [{name: numeric}]\n", ""), "rewards: method rlvr needs at least one reward"),
    ("one generation", RLVR + "trainer: {num_generations: 1}\n", "trainer.num_generations: GRPO needs at least 2"),
    ("managed reward weights", RLVR + "trainer: {reward_weights: [2.0]}\n", "trainer.reward_weights: set from each reward's weight"),
    ("dynamic sampling for sft", GOOD + "dynamic_sampling: {max_retries: 2}\n", "dynamic_sampling: dynamic sampling is for method: rlvr"),
    ("DPO loss weights", "method: dpo\ndata:\n  train:\n    - {task: arithmetic_pairs, n: 4}\ntrainer: {loss_type: [sigmoid, sft], loss_weights: [1.0]}\n",
     "trainer.loss_weights: 1 weights for 2 loss types"),
    ("DPO exo_pair without smoothing", "method: dpo\ndata:\n  train:\n    - {task: arithmetic_pairs, n: 4}\ntrainer: {loss_type: [exo_pair]}\n",
     "trainer.label_smoothing: loss_type exo_pair needs label_smoothing > 0"),
    ("KTO random sampling", "method: kto\ndata:\n  train:\n    - {task: arithmetic_pairs, n: 4}\n"
     "trainer: {train_sampling_strategy: random}\n", "trainer.train_sampling_strategy: KTO's KL estimate"),
    ("eval samples at temperature 0", GOOD + EVAL + "  n: 4\n", "eval: n = 4 samples need temperature > 0"),
    ("eval k over n", GOOD + EVAL + "  n: 2\n  temperature: 1.0\n  k: [4]\n", "eval: every k must be between 1 and n"),
    ("decontaminate without an eval set", GOOD.replace("data:\n", "data:\n  decontaminate: {}\n"), "data.decontaminate: there is no evaluation set"),
    ("eval data and eval fraction", GOOD.replace("data:\n", "data:\n  eval_fraction: 0.1\n  eval: [{task: arithmetic}]\n"),
     "data: give one of 'eval' sources, 'eval_fraction' or 'eval_size', not eval and eval_fraction"),
    ("an unknown overlong choice", GOOD.replace("data:\n", "data:\n  overlong: cut\n"), "data.overlong"),
    ("zero weight", "method: sft\ndata:\n  train:\n    - {task: arithmetic, weight: 0}\n", "data.train.0.weight: Input should be greater than 0"),
    ("unknown data format", "method: sft\ndata:\n  train:\n    - {task: arithmetic, format: csv}\n", "data.train.0.format: Input should be"),
    ("zero record size limit", "method: sft\ndata:\n  train:\n    - {task: arithmetic, max_record_mb: 0}\n", "data.train.0.max_record_mb"),
    ("empty training list", "method: sft\ndata:\n  train: []\n", "data.train: List should have at least 1 item"),
    ("a model directory without a model", GOOD + "model: {name_or_path: ./}\n", "model.name_or_path: "),
    ("a chat template that is not jinja", GOOD + "model: {chat_template: template.txt}\n", "model.chat_template: expected chatml, tulu, a path to a .jinja file or the template's Jinja text"),
    ("an unset variable in a path", "method: sft\ndata:\n  train:\n    - {path: '${POSTTRAIN_TEST_UNSET}/a.jsonl'}\n",
     "data.train.0.path: ${POSTTRAIN_TEST_UNSET}/a.jsonl names $POSTTRAIN_TEST_UNSET, which is not set"),
    ("a missing chat template file", GOOD + "model: {chat_template: missing.jinja}\n", "model.chat_template: file not found"),
    ("SLURM signal after the limit", GOOD + "launch: {slurm: {time: 5, signal_seconds: 600}}\n", "launch.slurm: signal_seconds (600) must be shorter"),
    ("SLURM time that is not a time", GOOD + "launch: {slurm: {time: soon}}\n", "launch.slurm: time 'soon' is not a SLURM time"),
    ("ZeRO and FSDP", GOOD + "launch: {zero: 3, fsdp: true}\n", "launch: choose DeepSpeed ZeRO (zero) or FSDP"),
    ("offload without ZeRO-3", GOOD + "launch: {zero: 2, offload: true}\n", "launch: offload needs zero: 3"),
    ("python backend with processes", GOOD + "launch: {backend: python, gpus_per_node: 2}\n", "launch: backend python starts one process"),
    ("W&B mode", GOOD + "tracking: {wandb: {mode: sometimes}}\n", "tracking.wandb.mode: Input should be"),
    ("batch as a string", GOOD + "batch: {global: \"32\"}\n", "batch.global: Input should be a valid integer"),
    ("run name leaving run.dir", GOOD + "run: {name: ../../elsewhere}\n", "run.name: '../../elsewhere' leaves run.dir"),
    ("absolute run name", GOOD + "run: {name: /etc}\n", "run.name: '/etc' is not a name inside run.dir"),
    ("run name of run.dir itself", GOOD + "run: {name: .}\n", "run.name: '.' leaves run.dir or names it itself"),
    ("duplicate keys", GOOD + "trainer: {max_steps: 5}\ntrainer: {max_steps: 6}\n", ":6: invalid YAML: the key 'trainer' appears twice"),
    ("not UTF-8", GOOD.encode() + b"description: caf\xe9\n", ":5: not UTF-8 text"),
    ("YAML alias bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(7)),
     "values once its YAML aliases (*name) are expanded"),
    ("invalid YAML", "method: sft\n\tdata: x\n", ":2: invalid YAML"),
    ("a list, not a mapping", "- method: sft\n", "a recipe must be a YAML mapping"),
    ("extends a missing file", "extends: nowhere.yaml\n" + GOOD, "extends: file not found"),
    ("a pipeline with a top-level method", "method: sft\n" + PIPELINE, "method: a pipeline gives each stage its own method"),
    ("stages that are not a list", "stages: {a: 1}\n", "stages: expected a list of stages"),
    ("two stages of one name", PIPELINE + "  - {name: a, method: sft, data: {train: [{task: arithmetic}]}}\n",
     "stages.1.name: two stages are named 'a'"),
    ("a stage name leaving run.dir", PIPELINE.replace("name: a", "name: ../a"), "stages.0.name: '../a' leaves run.dir"),
    ("instead_of no earlier stage", PIPELINE + "  - {name: b, method: sft, instead_of: c, data: {train: [{task: arithmetic}]}}\n",
     "stages.1.instead_of: 'c' is not an earlier stage"),
    ("an error inside a stage", PIPELINE.replace("{task: arithmetic}", "{task: arithmetc}"), "stages.0.data.train.0.task: unknown task"),
    ("unknown experiment", EXPERIMENT.replace("experiment: journey_vs_shortcut", "experiment: journey"), "experiment: Input should be 'journey_vs_shortcut'"),
    ("experiment seeds", EXPERIMENT.replace("seeds: [0, 1, 2]", "seeds: 3"), "phase2.seeds: expected a non-empty list"),
    ("experiment trees width", EXPERIMENT.replace("width: 4 ", "width: four "), "trees.width: Input should be a valid integer"),
    ("experiment phase 1 error", EXPERIMENT.replace("max_steps: 1200", "max_steps: 0"), "phase1.trainer.max_steps: must be a positive"),
]


def one_error_line(capsys, argv) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (argv, out, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_the_corpus_holds_at_least_sixty_bad_recipes():
    assert len(BAD_RECIPES) + len(MORE_BAD_RECIPES) >= 60


@pytest.mark.parametrize("name,text,expected", MORE_BAD_RECIPES, ids=[c[0] for c in MORE_BAD_RECIPES])
def test_a_bad_recipe_is_one_line_naming_its_key(tmp_path, capsys, name, text, expected):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = one_error_line(capsys, ["validate", str(path)])
    assert expected in line and str(path) in line, line


@pytest.mark.parametrize("name,text,key,fragments,line", BAD_RECIPES, ids=[b[0] for b in BAD_RECIPES])
def test_the_earlier_bad_recipes_are_one_line_from_the_command_line_too(tmp_path, capsys, name, text, key, fragments, line):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    error = one_error_line(capsys, ["validate", str(path)])
    assert f" {key}: " in error and all(f in error for f in fragments)


@pytest.mark.parametrize("override,expected", [
    ("a..b=1", "command line: a..b: a key path has an empty part"),
    (".a=1", "a key path has an empty part"),
    ("data.train.5.n=1", "command line: data.train.5.n: list index 5 is out of range"),
    ("method.x=1", "'method' is a value, not a mapping"),
    ("trainer", "an override must look like key.path=value"),
    ("trainer.max_steps=[1", "cannot parse value"),
])
def test_a_bad_override_is_one_line_naming_it(tmp_path, capsys, override, expected):
    path = tmp_path / "recipe.yaml"
    path.write_text(GOOD)
    assert expected in one_error_line(capsys, ["show", str(path), override])


# ----------------------------------------------------------------------------- data files

MSG = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
SFT_LINE = json.dumps({"messages": MSG})
TREE = {"question": "Compute 1 + 1.", "answer": "2",
        "steps": [{"id": "a", "parent": None, "text": "1 + 1 = 2", "rating": "correct", "answer": "2"}]}

# (name, method, file name, file bytes, source options, what the one error line must say (after the path))
BAD_DATA = [
    ("invalid JSON", "sft", "d.jsonl", f"{SFT_LINE}\n{SFT_LINE}\n{{oops\n", "", ":3: not valid JSON"),
    ("not UTF-8", "sft", "d.jsonl", f"{SFT_LINE}\n".encode() + b'{"messages": "caf\xe9"}\n', "", ":2: not UTF-8 text"),
    ("a line over the size limit", "sft", "d.jsonl", f"{SFT_LINE}\n" + json.dumps({"messages": [
        {"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "y"}]}) + "\n",
     ", max_record_mb: 0.001", ":2: a record of 0.0 MB, over the limit of 0.001 MB"),
    ("a record that is a list", "sft", "d.jsonl", "[1, 2]\n", "", ":1: expected a JSON object, got list"),
    ("empty messages", "sft", "d.jsonl", '{"messages": []}\n', "", ":1: 'messages' must be a non-empty list"),
    ("a bad role", "sft", "d.jsonl", json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n", "",
     ":1: 'messages[0].role' is 'robot'"),
    ("content that is not text", "sft", "d.jsonl", json.dumps({"messages": [{"role": "user", "content": 3}]}) + "\n",
     "", ":1: 'messages[0].content' must be a string"),
    ("a message that is a string", "sft", "d.jsonl", json.dumps({"messages": ["hi"]}) + "\n", "",
     ":1: 'messages[0]' must be an object"),
    ("no assistant turn", "sft", "d.jsonl", json.dumps({"messages": MSG[:1]}) + "\n", "", ":1: 'messages' has no assistant turn"),
    ("ending on the user's turn", "sft", "d.jsonl", json.dumps({"messages": MSG + MSG[:1]}) + "\n", "",
     ":1: 'messages' ends with a user turn"),
    ("an empty prompt", "sft", "d.jsonl", '{"prompt": "", "completion": "x"}\n', "", ":1: 'prompt' is empty"),
    ("no training columns", "sft", "d.jsonl", '{"text": "x"}\n', "", ":1: a sft record needs messages or prompt+completion"),
    ("text and message prompts in one file", "sft", "d.jsonl",
     '{"prompt": "Hi", "completion": "Hello"}\n' + json.dumps({"prompt": MSG[:1], "completion": MSG[1:]}) + "\n", "",
     ":2: prompt as messages, completion as messages, but"),
    ("two formats in one file", "sft", "d.jsonl", f'{SFT_LINE}\n{{"prompt": "Hi", "completion": "Hello"}}\n', "",
     ":2: prompt as text, completion as text, but"),
    ("a pair without rejected", "dpo", "d.jsonl", '{"prompt": "q", "chosen": "a"}\n', "",
     ":1: a preference record needs prompt+chosen+rejected or chosen+rejected"),
    ("a chosen that is a number", "dpo", "d.jsonl", '{"prompt": "q", "chosen": 1, "rejected": "b"}\n', "",
     ":1: 'chosen' must be a non-empty list of messages"),
    ("a rejected with a bad role", "dpo", "d.jsonl",
     json.dumps({"prompt": "q", "chosen": "a", "rejected": [{"role": "x", "content": "b"}]}) + "\n", "",
     ":1: 'rejected[0].role' is 'x'"),
    ("text and message prompts in RLVR data", "rlvr", "d.jsonl",
     '{"prompt": "Compute 1 + 1.", "ground_truth": "2"}\n' + json.dumps({"prompt": MSG[:1], "ground_truth": "2"}) + "\n",
     "", ":2: prompt as messages, but"),
    ("a null ground truth", "rlvr", "d.jsonl", '{"prompt": "Compute 1 + 1.", "ground_truth": null}\n', "",
     ":1: 'ground_truth' is null"),
    ("no ground truth", "rlvr", "d.jsonl", '{"prompt": "Compute 1 + 1."}\n', "", ":1: a task record needs prompt+ground_truth"),
    ("an empty task prompt", "rlvr", "d.jsonl", '{"prompt": "", "ground_truth": "2"}\n', "", ":1: 'prompt' is empty"),
    ("a KTO label that is a word", "kto", "d.jsonl", '{"prompt": "q", "completion": "a", "label": "yes"}\n', "",
     ":1: 'label' must be true"),
    ("a KTO record without a label", "kto", "d.jsonl", '{"prompt": "q", "completion": "a"}\n', "",
     ":1: a unpaired record needs prompt+completion+label"),
    ("a JSON file that is not a list", "sft", "d.json", '{"messages": []}', "", ": expected a JSON list of records"),
    ("an invalid JSON file", "sft", "d.json", "[{", "", ":1: not valid JSON"),
    ("a JSON file not in UTF-8", "sft", "d.json", b"[\xff]", "", ": not UTF-8 text"),
    ("a corrupt Parquet file", "sft", "d.parquet", b"PAR1 not really parquet", "", ": not a readable Parquet file"),
    ("an empty file", "sft", "d.jsonl", "", "", ": no records"),
    ("only blank lines", "sft", "d.jsonl", "\n\n  \n", "", ": no records"),
    ("a tree without steps", "sft", "t.jsonl", '{"question": "q", "answer": "1"}\n', ", traces: {kind: shortcut}",
     ":1: not a valid reasoning tree: a tree needs 'steps'"),
    ("a tree with a bad rating", "sft", "t.jsonl",
     json.dumps({**TREE, "steps": [{**TREE["steps"][0], "rating": "maybe"}]}) + "\n", ", traces: {kind: shortcut}",
     ":1: not a valid reasoning tree: step a: rating is 'maybe'"),
    ("a tree with a missing parent", "sft", "t.jsonl",
     json.dumps({**TREE, "steps": [*TREE["steps"], {"id": "b", "parent": "z", "text": "x", "rating": "incorrect"}]}) + "\n",
     ", traces: {kind: shortcut}", ":1: not a valid reasoning tree: step b: parent 'z' does not exist"),
    ("a GSM8K row without an answer", "rlvr", "g.jsonl", '{"question": "q"}\n', ", format: gsm8k", ":1: not a gsm8k record: missing column 'answer'"),
]


def test_the_corpus_holds_at_least_thirty_bad_data_files():
    assert len(BAD_DATA) >= 30


@pytest.mark.parametrize("name,method,filename,content,options,expected", BAD_DATA, ids=[c[0] for c in BAD_DATA])
def test_a_bad_data_file_is_one_line_naming_file_and_line(tmp_path, capsys, name, method, filename, content, options, expected):
    data = tmp_path / filename
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    extra = {"rlvr": "rewards: [{name: numeric}]\nbatch: {per_device: 8}\n"}.get(method, "")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"method: {method}\ndata:\n  train:\n    - {{path: {data}{options}}}\n{extra}{EVAL}")
    line = one_error_line(capsys, ["data", "decontaminate", str(recipe)])
    assert f"{data}{expected}" in line, line
