"""Errors a user can fix. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input: a recipe, a data file, a command-line argument."""


class RecipeError(UserError):
    """A recipe problem, located by file (and line) and dotted key path."""

    def __init__(self, where: str, key: str, message: str):
        self.where, self.key, self.message = where, key, message
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


class DataError(UserError):
    """A data problem, located by file and line where there is one."""


# Names people carry over from other tools, which spelling distance alone would not find.
ALIASES = {"rank": "r", "alpha": "lora_alpha", "dropout": "lora_dropout", "lr": "learning_rate",
           "epochs": "num_train_epochs", "steps": "max_steps", "max_seq_len": "max_length",
           "batch_size": "per_device", "grad_accum": "gradient_accumulation_steps"}


def did_you_mean(word: str, options) -> str:
    """"; did you mean 'x' or 'y'?" for the options closest to `word`, or ""."""
    import difflib

    options = list(options)
    close = difflib.get_close_matches(str(word), options, n=3, cutoff=0.6)
    if ALIASES.get(word) in options and ALIASES[word] not in close:
        close.insert(0, ALIASES[word])
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
