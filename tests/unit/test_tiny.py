"""The tiny default model: digit-level tokenizer, ChatML with generation markers, EOS agreement."""

import pytest

from posttrain.errors import UserError
from posttrain.recipe import TinyModelSpec
from posttrain.tiny import tiny_model_path
from posttrain.trainers.common import preflight_chat_template


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_model_path(TinyModelSpec())
    return path, AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)


def test_cached_build_is_reused(tiny):
    path, _, _ = tiny
    mtime = (path / "model.safetensors").stat().st_mtime
    assert tiny_model_path(TinyModelSpec()) == path
    assert (path / "model.safetensors").stat().st_mtime == mtime


def test_every_digit_is_its_own_token(tiny):
    _, tok, _ = tiny
    pieces = tok.tokenize("Compute 1234 + 56.")
    assert [p for p in pieces if p.strip("Ġ").isdigit()] == ["1", "2", "3", "4", "5", "6"]


def test_reload_gives_same_ids_as_the_trained_tokenizer(tiny):
    from posttrain.tiny import train_tokenizer

    _, tok, _ = tiny
    text = "<|im_start|>user\nCompute 66 - 20 + 90.<|im_end|>\n"
    assert tok(text).input_ids == train_tokenizer(TinyModelSpec().vocab_size)(text).input_ids


def test_assistant_mask_covers_only_the_answer_and_its_end_token(tiny):
    _, tok, _ = tiny
    messages = [{"role": "user", "content": "Compute 1 + 2."}, {"role": "assistant", "content": "Answer: 3"}]
    out = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "Answer: 3<|im_end|>"


def test_eos_pad_and_generation_config_agree(tiny):
    _, tok, model = tiny
    assert tok.eos_token == "<|im_end|>" and tok.pad_token != tok.eos_token
    assert model.generation_config.eos_token_id == [tok.eos_token_id]
    assert model.generation_config.pad_token_id == tok.pad_token_id
    preflight_chat_template(tok, model.generation_config, "tiny")


def test_preflight_catches_eos_that_is_not_the_turn_end(tiny):
    import copy

    _, tok, model = tiny
    wrong = copy.deepcopy(tok)
    wrong.eos_token = "<|endoftext|>"
    with pytest.raises(UserError, match="ends assistant turns with '<\\|im_end\\|>' but the tokenizer's EOS"):
        preflight_chat_template(wrong, model.generation_config, "tiny")


def test_preflight_catches_generation_config_without_the_turn_end(tiny):
    import copy

    _, tok, model = tiny
    config = copy.deepcopy(model.generation_config)
    config.eos_token_id = [tok.pad_token_id]
    with pytest.raises(UserError, match="generation config's eos_token_id"):
        preflight_chat_template(tok, config, "tiny")


def test_preflight_needs_a_chat_template(tiny):
    import copy

    _, tok, model = tiny
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(UserError, match="no chat template"):
        preflight_chat_template(bare, model.generation_config, "tiny")


def test_a_damaged_cache_is_built_again(tmp_path, monkeypatch, capsys):
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    monkeypatch.setenv("POSTTRAIN_CACHE", str(tmp_path))
    spec = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    first = tiny_model_path(spec)
    weights = first / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])  # cut short, as by a full disk or a killed copy
    again = tiny_model_path(spec)
    assert again == first and weights.read_bytes() == good  # rebuilt, and the build is deterministic
    assert "is damaged; building it again" in capsys.readouterr().out
    (first / "tokenizer.json").unlink()
    assert (tiny_model_path(spec) / "tokenizer.json").is_file()
    assert not list(tmp_path.glob("tiny/.damaged-*"))  # the damaged copies are cleaned up


def test_a_cache_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    from posttrain.errors import UserError
    from posttrain.recipe import TinyModelSpec
    from posttrain.tiny import tiny_model_path

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("POSTTRAIN_CACHE", str(blocker))
    with pytest.raises(UserError, match="cannot build the tiny model in .*set POSTTRAIN_CACHE"):
        tiny_model_path(TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64))


# open-r1's distillation recipe: a Jinja template written into the recipe, whose assistant turns
# end with a token the base model's tokenizer does not use as EOS, and `eos_token` naming it.
INLINE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|eot|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@pytest.mark.parametrize("where", ["model", "trainer"])
def test_an_inline_template_with_its_eos_token_passes_the_preflight(write_recipe, where):
    import yaml

    from posttrain.recipe import Device, load_recipe
    from posttrain.trainers.common import load_model_and_tokenizer

    text = yaml.safe_dump({"method": "sft", "data": {"train": [{"task": "arithmetic", "n": 4}]},
                           "model": {"chat_template": INLINE}})
    loaded = load_recipe(write_recipe(text)).recipe
    with pytest.raises(UserError, match="holds no special token"):
        load_model_and_tokenizer(loaded, Device(cuda=False, bf16=False))
    named = load_recipe(write_recipe(text), [f"{where}.eos_token=<|eot|>"]).recipe
    model, tok = load_model_and_tokenizer(named, Device(cuda=False, bf16=False))
    assert tok.eos_token == "<|eot|>" and tok.chat_template == INLINE
    assert model.generation_config.eos_token_id == [tok.eos_token_id] == [model.config.eos_token_id]
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
