"""The `trainer:` block of `method: prm`: transformers' TrainingArguments and the options TRL's
former PRMConfig had (TRL 1.16 has no PRM trainer any more; trainers/prm.py is posttrain's own).

Kept in a module of its own that imports only transformers' TrainingArguments, so recipe
validation reads its fields from source (config_fields.py) as it does TRL's configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class PRMConfig(TrainingArguments):
    """Options of a process-reward-model run, beside every TrainingArguments field."""

    learning_rate: float = field(default=1e-5, metadata={"help": "The initial learning rate (TRL's PRM default)."})
    max_length: int | None = field(default=1024, metadata={"help": "Tokens kept per example (prompt + steps); "
                                                           "longer examples are cut from the end."})
    max_prompt_length: int | None = field(default=512, metadata={"help": "Tokens kept of the prompt (from its end)."})
    max_completion_length: int | None = field(default=None, metadata={"help": "Tokens kept of the steps."})
    step_separator: str = field(default="\n", metadata={"help": "Written after each step; the classifier's label "
                                                        "sits on the separator's last token."})
    step_tag: str | None = field(default=None, metadata={"help": "Where the label sits when step_separator has "
                                                         "text after it: a prefix of step_separator (Math-Shepherd: "
                                                         "step_tag ' ки' of step_separator ' ки\\n')."})
    train_on_last_step_only: bool = field(default=False, metadata={"help": "Train on the last step's label only "
                                                                   "(an outcome reward model over steps)."})
    head: str = field(default="token_classification", metadata={
        "help": "token_classification: a two-label classifier head on each step's label token; causal_lm: the "
                "language model itself writes positive_token or negative_token there (Math-Shepherd, OpenRLHF)."})
    positive_token: str = field(default="+", metadata={"help": "head causal_lm: the token of a correct step "
                                                                "(one token of the tokenizer)."})
    negative_token: str = field(default="-", metadata={"help": "head causal_lm: the token of an incorrect step."})
    disable_dropout: bool = field(default=True, metadata={"help": "Turn off every dropout layer of the model "
                                                          "(TRL's former PRMConfig default)."})
    threshold: float = field(default=0.5, metadata={"help": "A step is judged correct when the model's probability "
                                                    "of correct is at least this (evaluation)."})
