import os
import tempfile
from pathlib import Path

import pytest

# No network in tests: fail fast instead of waiting on the hub; W&B logs offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny model is built once and reused by every test and subprocess (keyed by its config).
os.environ.setdefault("POSTTRAIN_CACHE", str(Path(tempfile.gettempdir()) / "posttrain-test-cache"))

REPO = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(skip)


@pytest.fixture
def write_recipe(tmp_path):
    """Write YAML text to a file in tmp_path and return its path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def noisy_tiny():
    """A factory: the tiny model of a TinyModelSpec with noise added to its weights, and its
    tokenizer. An untrained model repeats one token; noisy weights write varied text, so
    generation tests see rows that differ and stop at different steps."""

    def load(spec):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from posttrain.tiny import tiny_model_path

        path = tiny_model_path(spec)
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        torch.manual_seed(0)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.5)
        return model, tokenizer

    return load
