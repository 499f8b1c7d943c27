"""Recipes: the schema (schema.py), reading YAML with extends and overrides (load.py), the TRL
and peft field checks (trl_fields.py), the cross-field rules (check.py), what a recipe becomes on
a machine (device.py), and the three kinds of recipe file behind one interface (kinds.py).

Nothing here imports torch, transformers or TRL: `posttrain validate` answers in well under a
second.
"""

from posttrain.errors import UserError
from posttrain.recipe.check import LoadedRecipe, gradient_accumulation, validate
from posttrain.recipe.device import (Device, check_vllm_installed, resolution_device, resolved_dict, shown, target_device,
                                     to_yaml, trainer_arguments)
from posttrain.recipe.kinds import Experiment, Pipeline, RecipeKind, SingleRun, Stage, derive, load_recipe
from posttrain.recipe.load import Origin, locate
from posttrain.recipe.schema import (DataSource, EvalSpec, OnPolicySpec, Recipe, RewardRef, RewardSpec, TinyModelSpec,
                                     TracesSpec, TreesSpec, slurm_time_seconds)


def load_run(path, overrides=()) -> LoadedRecipe:
    """A single-run recipe (not a pipeline or an experiment), validated."""
    loaded = load_recipe(path, overrides)
    if not isinstance(loaded, SingleRun):
        raise UserError(f"{path}: a {loaded.kind}, not a single run; name one of its stages' recipes")
    return loaded.recipe


__all__ = ["DataSource", "Device", "EvalSpec", "Experiment", "LoadedRecipe", "OnPolicySpec", "Origin", "Pipeline",
           "Recipe", "RecipeKind", "RewardRef", "RewardSpec", "SingleRun", "Stage", "TinyModelSpec", "TracesSpec",
           "TreesSpec", "check_vllm_installed", "derive", "gradient_accumulation", "load_recipe", "load_run",
           "locate", "resolution_device", "resolved_dict", "shown", "slurm_time_seconds", "target_device", "to_yaml",
           "trainer_arguments", "validate"]
