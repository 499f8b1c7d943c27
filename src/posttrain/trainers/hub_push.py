"""Pushing a finished run to the Hugging Face hub: `trainer.push_to_hub: true`.

The Trainer's own pushing is switched off (it would create the repository when the trainer is
built and upload the checkpoint directory as it saves); posttrain pushes what the run is for,
once training and evaluation are done:

- final/ (the model, merged when LoRA trained it) at the repository's root,
- adapter/ (a LoRA run's adapter) under `adapter/`,
- README.md, a model card holding the resolved recipe and the evaluation report.

The repository is `trainer.hub_model_id`, else the run's name (a name without a namespace goes
to the token's user, as the Trainer does); `hub_private_repo` and `hub_revision` are honoured.
`hub_strategy` `end` and `every_save` (the Trainer's default) both push at the end: posttrain
keeps intermediate checkpoints in the run directory. Whether the hub can be reached and a token
is there is checked when the run starts, so an offline machine fails in seconds, not after
training.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import UserError
from posttrain.hub import hub_endpoint, hub_unreachable_reason
from posttrain.recipe import LoadedRecipe, to_yaml
from posttrain.rundir import EvalDir, RunDir

# The TrainingArguments keys posttrain takes over from the Trainer when it pushes.
HUB_KEYS = ("push_to_hub", "hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_revision",
            "hub_always_push")


def wants_push(loaded: LoadedRecipe) -> bool:
    return bool(loaded.spec.trainer.get("push_to_hub"))


def repo_id(loaded: LoadedRecipe) -> str:
    return loaded.spec.trainer.get("hub_model_id") or loaded.run_name.replace("/", "-")


def _token(loaded: LoadedRecipe) -> str | None:
    from huggingface_hub import get_token

    return loaded.spec.trainer.get("hub_token") or get_token()


def check_can_push(loaded: LoadedRecipe) -> None:
    """Before anything trains: the hub answers and a token is configured. Raises the recipe's
    error naming trainer.push_to_hub otherwise (the strategy is checked with the recipe)."""
    if not wants_push(loaded):
        return
    reason = hub_unreachable_reason()
    if reason:
        raise loaded.error(("trainer", "push_to_hub"), f"the Hugging Face hub is unreachable ({reason}), so the "
                           "trained model could not be pushed; set trainer.push_to_hub=false, or run where the "
                           "hub answers (the run stopped before training)")
    if not _token(loaded):
        raise loaded.error(("trainer", "push_to_hub"), "no Hugging Face token: run `hf auth login` or set "
                           "HF_TOKEN (the run stopped before training)")


def arguments_for_trl(args: dict) -> dict:
    """The TRL config's arguments with the Trainer's own pushing off (posttrain pushes)."""
    out = {k: v for k, v in args.items() if k not in HUB_KEYS}
    out["push_to_hub"] = False
    return out


def model_card(loaded: LoadedRecipe, resolved: dict, report: dict | None) -> str:
    """README.md for the pushed repository: hub metadata, the resolved recipe, the evaluation."""
    import yaml

    spec = loaded.spec
    base = spec.model.name_or_path
    datasets = sorted({s.hub for s in spec.data.train if s.hub})
    meta = {"library_name": "transformers", "tags": ["posttrain", "trl", spec.method]}
    if base != "tiny" and not Path(base).is_absolute():
        meta["base_model"] = base
    if datasets:
        meta["datasets"] = datasets
    if spec.peft is not None:
        meta["tags"].append("lora")
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "",
             f"# {repo_id(loaded)}", "",
             f"Trained with posttrain ({spec.method}) from `{base}`"
             + (f" on {', '.join(f'`{d}`' for d in datasets)}" if datasets else "") + ".", "",
             "## Recipe", "", "The recipe as the run resolved it (`recipe.resolved.yaml`):", "",
             "```yaml", to_yaml(resolved).rstrip(), "```", ""]
    if report:
        lines += ["## Evaluation", "", "```json", json.dumps(report, indent=2, sort_keys=True), "```", ""]
    if spec.peft is not None:
        lines += ["The LoRA adapter is under `adapter/`; the repository root holds the merged model.", ""]
    return "\n".join(lines)


def push_run(loaded: LoadedRecipe, run: RunDir, report: dict | None) -> str:
    """Upload final/, adapter/ and the model card; returns the repository's URL."""
    import yaml
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    trainer = loaded.spec.trainer
    resolved = yaml.safe_load(run.resolved_recipe.read_text())
    card = model_card(loaded, resolved, report or _report(run))
    api = HfApi(endpoint=hub_endpoint(), token=_token(loaded))
    revision = trainer.get("hub_revision")
    try:
        repo = api.create_repo(repo_id(loaded), private=bool(trainer.get("hub_private_repo")), exist_ok=True)
        target = repo.repo_id
        if revision:
            api.create_branch(target, branch=revision, exist_ok=True)
        api.upload_folder(repo_id=target, folder_path=str(run.final), revision=revision,
                          commit_message=f"posttrain: final model of run {loaded.run_name}")
        if run.adapter.is_dir():
            api.upload_folder(repo_id=target, folder_path=str(run.adapter), path_in_repo="adapter",
                              revision=revision, commit_message="posttrain: LoRA adapter")
        api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=target,
                        revision=revision, commit_message="posttrain: model card")
    except (HfHubHTTPError, OSError) as exc:
        raise UserError(f"trainer.push_to_hub: pushing {run.final} to {repo_id(loaded)} failed: {exc}. The run "
                        "is complete; push it again with `hf upload` from its directory") from None
    return repo.url


def _report(run: RunDir) -> dict | None:
    path = EvalDir(run.eval_dir).report
    return json.loads(path.read_text()) if path.is_file() else None
