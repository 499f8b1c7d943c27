"""Every CLI command on every shipped recipe, offline: each ends in its result or in one line
that says what is wrong, never in a traceback. Hub models and datasets cannot be reached here,
so for the real recipes the one-line error is the expected answer; the tiny ones give results.

`run` trains nothing here (the smoke recipes train in test_shipped_recipes.py): it meets a run
directory whose runs are finished, which each kind of recipe must recognise (a single run
refuses to overwrite it; a pipeline skips every stage and writes its summary; an experiment
reuses every run and writes its comparison).
"""

import json
from pathlib import Path

import pytest
import yaml

from posttrain.cli import main
from posttrain.recipe import load_recipe

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(REPO.glob("recipes/*/*.yaml"))


@pytest.fixture(autouse=True)
def llama_factory_data(monkeypatch):
    """LLaMA-Factory's recipes read its data/ directory ($LLAMAFACTORY_DATA); fixtures stand in."""
    monkeypatch.setenv("LLAMAFACTORY_DATA", str(REPO / "recipes" / "llama-factory" / "fixtures"))


def call(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code in (0, 2), f"{argv}: exit code {code}\n{err}"
    assert "Traceback" not in err, f"{argv}: a traceback\n{err}"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if code == 2:
        assert len(errors) == 1, f"{argv}: expected one error line, got\n{err}"
    else:
        assert not errors, err
    return code, out, errors[0] if errors else ""


def small_tiny_run(recipe: Path) -> list[str]:
    """Overrides that make build-trees cheap on a single tiny- or built-in-model recipe with task data."""
    from posttrain.models import BUILTIN

    loaded = load_recipe(recipe)
    if loaded.kind != "run" or loaded.recipe.spec.model.name_or_path not in ("tiny", *BUILTIN):
        return []  # (the built-in real model too, where it has been fetched: 3 questions, not 2,000)
    return [f"data.train.{i}.n=3" for i, s in enumerate(loaded.recipe.spec.data.train) if s.task]


def finish_every_run(recipe: Path, overrides: list[str]) -> None:
    """Write what finished runs leave behind, for each run the recipe holds."""
    loaded = load_recipe(recipe, overrides)
    report = {"trained": {"accuracy": 0.5, "correct": 1, "samples": 2, "mean_reward": 0.5}}
    if loaded.kind == "experiment":
        loaded.root.mkdir(parents=True, exist_ok=True)
        loaded.group.trees.write_text(json.dumps({"question": "Compute 1 + 1.", "answer": "2", "steps": [
            {"id": "a", "parent": None, "text": "1 + 1 = 2", "rating": "correct", "answer": "2"}]}) + "\n")
        loaded.group.trees_stats.write_text(json.dumps({"trees": 1, "questions": 1, "steps": 1,
                                                        "incorrect steps": 0, "seconds": 0.0}))
    for stage in loaded.stages:
        run = stage.recipe.run_dir
        (run / "final").mkdir(parents=True, exist_ok=True)
        (run / "final" / "config.json").write_text("{}")
        (run / "eval").mkdir(exist_ok=True)
        (run / "eval" / "report.json").write_text(json.dumps(report))
        row = {"stage": stage.name, "method": stage.recipe.spec.method, "instead_of": stage.instead_of,
               "accuracy": 0.5, "mean_reward": 0.5, "tokens": None, "train_seconds": 1.0, "wall_seconds": 1.0}
        (run / "stage.json").write_text(json.dumps(row))


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(REPO / "recipes")) for p in RECIPES])
def test_every_command_gives_a_result_or_one_line(recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, runs = str(recipe), [f"run.dir={tmp_path / 'runs'}"]
    loaded = load_recipe(recipe, runs)

    assert call(capsys, ["validate", path])[1].startswith(f"ok: {path} (")
    # Each command: its result, or (call checks it) one line saying why not.
    code, out, _ = call(capsys, ["show", path, *runs])
    assert code == 2 or isinstance(yaml.safe_load(out), dict)
    code, out, _ = call(capsys, ["launch", path, *runs, "--dry-run"])
    assert code == 2 or " -m posttrain run " in out
    code, out, _ = call(capsys, ["launch", path, *runs, "--slurm", "--dry-run"])
    assert code == 2 or ("#SBATCH --nodes=" in out and (loaded.root / "slurm" / "job.sbatch").is_file())
    code, out, _ = call(capsys, ["plan", path, *runs])
    assert code == 2 or "recommended with 80 GiB GPUs" in out
    code, out, _ = call(capsys, ["eval", path, *runs])
    assert code == 2  # nothing is trained yet: it says which model is missing, or why eval does not apply
    code, out, _ = call(capsys, ["data", "decontaminate", path, *runs])
    assert code == 2 or "| source | records | contaminated |" in out
    trees = tmp_path / "trees.jsonl"
    code, out, _ = call(capsys, ["data", "build-trees", path, *runs, *small_tiny_run(recipe), "-o", str(trees),
                                 "--depth", "1", "--width", "2"])
    assert code == 2 or trees.is_file()

    finish_every_run(recipe, runs)
    code, out, error = call(capsys, ["run", path, *runs])
    if loaded.kind == "run" and loaded.recipe.spec.trainer.get("push_to_hub"):
        assert code == 2 and "trainer.push_to_hub: the Hugging Face hub is unreachable" in error  # first
    elif loaded.kind == "run":
        assert code == 2 and "holds a finished run; pass --overwrite" in error
    elif loaded.kind == "pipeline":
        assert code == 0 and (loaded.root / "summary.md").is_file()
        assert out.count("is finished; skipping it") == len(loaded.stages)
    else:
        assert code == 0 and (loaded.root / "comparison.md").is_file()
        assert out.count("is finished; reusing it") == len(loaded.stages)


def test_the_matrix_covers_every_kind_of_recipe_and_both_outcomes(tmp_path, capsys, monkeypatch):
    """The shipped recipes hold every kind, and the tiny ones give results, not only errors."""
    monkeypatch.chdir(tmp_path)
    assert {load_recipe(p).kind for p in RECIPES} == {"run", "pipeline", "experiment"}
    for name in ("quickstart/sft.yaml", "quickstart/pipeline.yaml", "quickstart/journey-vs-shortcut.yaml"):
        path = str(REPO / "recipes" / name)
        for command in (["show"], ["launch", "--dry-run"], ["launch", "--slurm", "--dry-run"], ["plan"]):
            assert call(capsys, [command[0], path, f"run.dir={tmp_path}", *command[1:]])[0] == 0, (name, command)
        assert call(capsys, ["data", "decontaminate", path])[0] == 0, name
    sft = str(REPO / "recipes/quickstart/sft.yaml")
    code, _, error = call(capsys, ["eval", sft, f"run.dir={tmp_path}"])
    assert code == 2 and error == (f"error: {tmp_path}/quickstart-sft/final: no model there (config.json missing); "
                                   "pass --model DIR, a .gguf file or a built-in model (smollm2-135m-instruct)")
    code, out, _ = call(capsys, ["data", "build-trees", sft, "data.train.0.n=3", "--depth", "1", "--width", "2",
                                 "-o", str(tmp_path / "trees.jsonl")])
    assert code == 0 and "trees from 3 questions" in out
    # a GPU recipe renders for the 8-GPU machine its launch block describes; `--here` is this machine
    code, out, _ = call(capsys, ["show", str(REPO / "recipes/r1-zero/grpo.yaml")])
    assert code == 0 and yaml.safe_load(out)["trainer"]["use_vllm"] is True
    code, _, error = call(capsys, ["show", str(REPO / "recipes/r1-zero/grpo.yaml"), "--here"])
    assert code == 2 and "trainer.use_vllm: vLLM generation needs a GPU and this machine has none" in error
    code, _, error = call(capsys, ["plan", str(REPO / "recipes/tulu3/sft.yaml")])
    assert code == 2 and "model.name_or_path: cannot read the model's config" in error


def test_commands_that_need_one_stage_say_how_to_pick_it(tmp_path, capsys):
    pipeline = str(REPO / "recipes/quickstart/pipeline.yaml")
    code, _, error = call(capsys, ["data", "build-trees", pipeline, "-o", str(tmp_path / "t.jsonl")])
    assert code == 2 and "a pipeline of 4 stages (sft, dpo, rlvr, more-sft); pick one with --stage NAME" in error
    code, _, error = call(capsys, ["eval", str(REPO / "recipes/quickstart/journey-vs-shortcut.yaml")])
    assert code == 2 and "an experiment scores every one of its runs itself" in error and "--model" in error
    code, out, _ = call(capsys, ["plan", pipeline, "--stage", "dpo"])
    assert code == 0 and out.count("recommended with") == 1
    code, _, error = call(capsys, ["plan", pipeline, "--stage", "nosuch"])
    assert code == 2 and "no stage named 'nosuch' (stages: sft, dpo, rlvr, more-sft)" in error
