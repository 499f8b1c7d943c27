"""Training budgets that do not depend on the machine: tokens trained on and estimated FLOPs.

    FLOPs = 2 x N x passes x tokens

N is the model's parameter count without the input embedding (a lookup, not a matmul; the
output layer counts, tied or not), as in Kaplan et al. (arXiv 2001.08361), where a forward
pass costs 2N per token. `passes` is the method's row (posttrain/methods.py): 3 for SFT
(forward + backward), 4 for DPO and KTO (the reference model's forward), 4 for GRPO with
beta 0 (generating each token, then training on it), 5 with a reference model. Attention's
context term (2 x layers x context x width per token) is left out: at the lengths these
comparisons train on it is a few percent, and it is the same for both arms of a comparison at
equal lengths. With LoRA, N still counts every parameter: the frozen weights run forward and
backward too. The estimate is what makes two arms comparable; it is not a hardware count.

`tokens` is what the TRL trainer itself counts: every token of the batches it trained on
(prompt and completion, padding excluded), summed over processes; for GRPO, each generated
batch's prompt and completion tokens.
"""

from __future__ import annotations

from posttrain.methods import METHODS


def full_numel(parameter) -> int:
    """A parameter's full size: under ZeRO-3 each rank holds a shard, and ds_numel is the whole."""
    return getattr(parameter, "ds_numel", parameter.numel())


def model_parameters(model) -> int:
    """Parameters without the input embedding (see the module's docstring); ZeRO-3 shards count
    whole."""
    numel = full_numel
    base = getattr(model, "get_base_model", lambda: model)()  # a peft model: the wrapped one
    embedding = base.get_input_embeddings() if hasattr(base, "get_input_embeddings") else None
    skip = {id(p) for p in embedding.parameters()} if embedding is not None else set()
    output = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    tied_output = sum(numel(p) for p in output.parameters() if id(p) in skip) if output is not None else 0
    return sum(numel(p) for p in base.parameters() if id(p) not in skip) + tied_output


def flops_per_token(method: str, trainer_args: dict, parameters: int) -> float:
    return 2.0 * parameters * METHODS[method].passes(trainer_args)


def trained_tokens(trainer, method: str) -> tuple[int, bool]:
    """The tokens the TRL trainer has counted (this process's view of the all-process total),
    and whether the count survives a resume (the method's row says where its trainer counts)."""
    if METHODS[method].tokens_in_state:
        return int(getattr(trainer.state, "num_input_tokens_seen", 0) or 0), True
    return int(getattr(trainer, "_total_train_tokens", 0) or 0), False


class Meter:
    """What a run has spent: tokens and FLOPs, counted on from a resumed checkpoint's record."""

    def __init__(self, method: str, trainer_args: dict, spent_before: dict | None = None):
        self.method, self.trainer_args = method, trainer_args
        self.before = dict(spent_before or {})
        self.trainer = None
        self.per_token = None
        self.parameters = None

    def attach(self, trainer) -> None:
        self.trainer = trainer
        self.parameters = model_parameters(trainer.model)
        self.per_token = flops_per_token(self.method, self.trainer_args, self.parameters)

    def tokens(self) -> int:
        if self.trainer is None:
            return int(self.before.get("train_tokens", 0))
        now, restored = trained_tokens(self.trainer, self.method)
        return now if restored else int(self.before.get("train_tokens", 0)) + now

    def flops(self) -> float:
        return self.tokens() * (self.per_token or 0.0)

    def spent(self) -> dict:
        return {"train_tokens": self.tokens(), "train_flops": self.flops(), "parameters": self.parameters}
