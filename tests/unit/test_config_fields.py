"""The source-read field lists must equal the real dataclasses' fields (no drift)."""

import dataclasses

import pytest

from posttrain.config_fields import dataclass_fields, value_matches
from posttrain.methods import METHODS
from posttrain.recipe.trl_fields import PEFT_CONFIG


@pytest.mark.parametrize("module,name", [*(m.config for m in METHODS.values()), PEFT_CONFIG])
def test_fields_match_the_imported_dataclass(module, name):
    import importlib

    real = getattr(importlib.import_module(module), name)
    expected = {f.name for f in dataclasses.fields(real) if f.init}
    assert set(dataclass_fields(module, name)) == expected


@pytest.mark.parametrize("module,name", [*(m.config for m in METHODS.values()), PEFT_CONFIG])
def test_declared_defaults_match_the_imported_dataclass(module, name):
    """What `posttrain show` prints as TRL's defaults is what the dataclass declares."""
    import importlib

    from posttrain.config_fields import NO_DEFAULT

    real = {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(module), name)) if f.init}
    read = dataclass_fields(module, name)
    literal = 0
    for field_name, spec in read.items():
        if spec.default is NO_DEFAULT:
            continue
        literal += 1
        f = real[field_name]
        declared = f.default_factory() if f.default is dataclasses.MISSING else f.default
        declared = getattr(declared, "value", declared)  # enum members are written as their values
        assert spec.default == declared, field_name
    assert literal >= 0.9 * len(read)  # nearly every field's default is a literal


@pytest.mark.parametrize("value,annotation,ok", [
    (1e-3, "float", True), (3, "float", True), ("x", "float", False), (True, "int", False),
    (None, "int | None", True), ("steps", "IntervalStrategy | str", True), ([1], "list[int] | None", True),
    ({"a": 1}, "dict[str, Any] | str | None", True), (2, "Literal['a', 'b']", False),
    ("a", "Optional[Literal['a', 'b']]", True),
])
def test_value_matches(value, annotation, ok):
    assert value_matches(value, annotation) is ok


def test_choices_listed_only_in_trls_help_are_read_from_it():
    grpo, dpo = dataclass_fields("trl", "GRPOConfig"), dataclass_fields("trl", "DPOConfig")
    assert {"grpo", "dr_grpo", "dapo", "bnpo"} <= set(grpo["loss_type"].choices)
    assert grpo["vllm_mode"].choices == ("server", "colocate")
    assert {"sigmoid", "ipo", "sigmoid_norm", "sft"} <= set(dpo["loss_type"].choices)
    # A help that explains its values in prose gives no list: half a list would reject good values.
    assert grpo["scale_rewards"].choices is None

