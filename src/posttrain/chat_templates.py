"""Named chat templates for base models that have none, and how to install one.

Both mark assistant turns with `{% generation %}` so assistant-only loss works. Installing a
template makes its end-of-turn token the tokenizer's EOS and the generation config's EOS (the
mismatch the chat-template preflight exists to catch) and adds any missing special tokens.
"""

from __future__ import annotations

import re
from pathlib import Path

from posttrain.recipe.check import is_inline_template

# The run's chat_template_kwargs (model.chat_template_kwargs, e.g. enable_thinking: false for a
# template that switches on it) are the defaults of the tokenizer's own apply_chat_template, so
# that every rendering uses them: TRL's trainers (which pass a row's `chat_template_kwargs`
# column, or their config's, on top: those win) and posttrain's sampling and evaluation alike.
TEMPLATE_KWARGS = "_posttrain_chat_template_kwargs"


def set_template_kwargs(tokenizer, kwargs: dict) -> None:
    """Make `kwargs` the defaults of this tokenizer's apply_chat_template (the instance only;
    nothing of it is saved with the tokenizer)."""
    kwargs = dict(kwargs)
    if getattr(tokenizer, TEMPLATE_KWARGS, None) is None:
        original = tokenizer.apply_chat_template

        def apply_chat_template(*args, **options):
            return original(*args, **{**getattr(tokenizer, TEMPLATE_KWARGS), **options})

        tokenizer.apply_chat_template = apply_chat_template
    setattr(tokenizer, TEMPLATE_KWARGS, kwargs)


def template_kwargs(tokenizer) -> dict:
    return dict(getattr(tokenizer, TEMPLATE_KWARGS, None) or {})


def render(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False, tokenize: bool = False,
           **kwargs):
    """The chat template over `messages` (with the run's chat_template_kwargs): the text, or with
    `tokenize` the list of token ids (transformers 5 returns a BatchEncoding by default, whose
    len() is its number of fields, not of tokens)."""
    if tokenize:
        kwargs["return_dict"] = False
    return tokenizer.apply_chat_template(messages, tokenize=tokenize, add_generation_prompt=add_generation_prompt,
                                         **kwargs)


# ChatML. `{% generation %}` marks what the assistant says, so TRL's assistant-only loss works;
# the assistant turn ends with <|im_end|>, which is also the EOS token.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Tulu 3's format: <|user|> / <|assistant|> headers, each assistant turn ended by the EOS token.
TULU_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{{ '\n' }}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# name -> (template, end-of-turn token or None for "the tokenizer's own EOS", special tokens to add)
TEMPLATES = {
    "chatml": (CHATML_TEMPLATE, "<|im_end|>", ["<|im_start|>", "<|im_end|>"]),
    "tulu": (TULU_TEMPLATE, None, []),
}


def install_chat_template(tokenizer, model, choice: str | None, base_dir: Path, eos_token: str | None = None,
                          pad_token: str | None = None) -> None:
    """Give `tokenizer` the named template (or a .jinja file's, or the Jinja text itself) and
    align EOS everywhere: to `eos_token` when given, else to the named template's end-of-turn
    token, else to the tokenizer's own EOS."""
    template, end_token, specials = None, None, []
    if choice in TEMPLATES:
        template, end_token, specials = TEMPLATES[choice]
    elif choice is not None:
        template = choice if is_inline_template(choice) else (base_dir / choice).read_text(encoding="utf-8")
    if eos_token is not None:
        end_token = eos_token
        specials = [*specials, eos_token]
    if pad_token is not None:
        specials = [*specials, pad_token]
    missing = [t for t in dict.fromkeys(specials) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
        model.resize_token_embeddings(len(tokenizer))
    if template is not None:
        tokenizer.chat_template = template
    if end_token is not None:
        tokenizer.eos_token = end_token
    eos_id = tokenizer.eos_token_id
    model.config.eos_token_id = eos_id
    if getattr(model, "generation_config", None) is not None:  # a reward model has none
        model.generation_config.eos_token_id = [eos_id]
    if pad_token is not None:
        tokenizer.pad_token = pad_token
    elif tokenizer.pad_token is None or tokenizer.pad_token_id == eos_id:
        # A pad token distinct from EOS keeps EOS learnable where collators mask padding.
        fallback = "<|endoftext|>" if "<|endoftext|>" in tokenizer.get_vocab() else None
        if fallback and tokenizer.convert_tokens_to_ids(fallback) != eos_id:
            tokenizer.pad_token = fallback
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


# ----------------------------------------------------------------------------- generation markers

GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and GENERATION_MARKER.search(template) is not None


def _chatml_with_default_system(system: str | None) -> str:
    """CHATML_TEMPLATE, opening with `system` as a system turn when the conversation has none."""
    if system is None:
        return CHATML_TEMPLATE
    opening = ("{% if messages and messages[0]['role'] != 'system' %}"
               "{{ '<|im_start|>system\n' + " + repr(system) + " + '<|im_end|>\n' }}{% endif %}")
    return opening + CHATML_TEMPLATE


# Conversations a marked template must render exactly as the original does.
_PROBES = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"},
     {"role": "assistant", "content": "6\nAnswer: 6"}],
    [{"role": "user", "content": "Compute 1 + 2."}],
]


def _render(template: str, messages: list[dict], generation_prompt: bool) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template,
                                        add_generation_prompt=generation_prompt)
    return rendered[0]


def with_generation_markers(template: str) -> str | None:
    """A template that renders every conversation exactly as `template` does, with `{% generation %}`
    around what the assistant says, for the template families posttrain knows (ChatML, with or
    without a default system prompt: SmolLM2, Qwen2.5 without tools, ...); None for another.
    Equality is checked by rendering probe conversations with both."""
    try:
        opening = _render(template, _PROBES[2], False)
    except Exception:  # noqa: BLE001 - jinja raises many kinds
        return None
    system = None
    prefix, user = "<|im_start|>system\n", "<|im_end|>\n<|im_start|>user\n"
    if opening.startswith(prefix) and user in opening:
        system = opening[len(prefix) : opening.index(user)]
    candidate = _chatml_with_default_system(system)
    try:
        same = all(_render(template, m, g) == _render(candidate, m, g) for m in _PROBES for g in (False, True)
                   if not (g and m[-1]["role"] == "assistant"))
    except Exception:  # noqa: BLE001
        return None
    return candidate if same else None
