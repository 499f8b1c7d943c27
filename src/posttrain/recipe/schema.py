"""The recipe schema: one pydantic block per recipe section, nothing else.

Blocks are strict (no coercion) and forbid unknown keys; check.py turns pydantic's errors into
messages naming the file, line and key, and holds the rules that span blocks. The method names
come from the one table of methods (posttrain/methods.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from posttrain.methods import METHODS
from posttrain.rundir import has_control, name_problem

KeyPath = tuple[Union[str, int], ...]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class TinyModelSpec(_Block):
    """Size knobs of the built-in tiny Llama model (`model.name_or_path: tiny`)."""

    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(4, gt=0)
    num_heads: int = Field(4, gt=0)
    intermediate_size: int = Field(512, gt=0)
    vocab_size: int = Field(320, ge=280)  # 256 bytes + specials + a few merges
    max_position_embeddings: int = Field(512, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class QuantizationSpec(_Block):
    """Load the base model quantized with bitsandbytes (QLoRA: 4-bit; or 8-bit) and train LoRA
    adapters on it; transformers' BitsAndBytesConfig and peft's k-bit preparation."""

    bits: Literal[4, 8]
    quant_type: Literal["nf4", "fp4"] = "nf4"  # 4-bit only: QLoRA's NormalFloat4, or FP4
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: bf16 on GPUs, fp32 on CPU
    double_quant: bool = False  # 4-bit only: quantize the quantization constants too (QLoRA's "double quant")

    @model_validator(mode="after")
    def _four_bit_options(self):
        if self.bits == 8 and (self.quant_type != "nf4" or self.double_quant):
            raise ValueError("quant_type and double_quant are 4-bit options; remove them for bits: 8")
        return self


class ModelSpec(_Block):
    # tiny | a built-in real model (smollm2-135m-instruct: `posttrain fetch-model` gets it) |
    # a hub name | a local directory | a .gguf file (docs/recipes.md#models)
    name_or_path: str = "tiny"
    # A GGUF file: a name inside name_or_path (a directory or a hub repository), or a path of its
    # own; dequantised once into a cached model directory (posttrain/models.py)
    gguf_file: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    # chatml | tulu | path/to/template.jinja | the Jinja text itself (alignment-handbook, open-r1)
    chat_template: str | None = None
    # The token that ends an assistant turn, made the EOS of tokenizer, model and generation
    # config (open-r1's `eos_token`); added as a special token when the vocabulary lacks it.
    eos_token: str | None = None
    # The padding token (axolotl's special_tokens.pad_token); added if the vocabulary lacks it.
    pad_token: str | None = None
    # Keyword arguments of every rendering of the chat template (e.g. enable_thinking: false for
    # a template that switches on it): training rows (a row's own chat_template_kwargs column
    # wins), GRPO's prompts, posttrain's sampling and evaluation (TRL's chat_template_kwargs).
    chat_template_kwargs: dict[str, Any] = {}
    quantization: QuantizationSpec | None = None
    tiny: TinyModelSpec = TinyModelSpec()


class TracesSpec(_Block):
    """Turn reasoning-tree records into traces (docs/trees.md)."""

    kind: Literal["shortcut", "journey", "pairs", "steps"]
    detours: int = Field(1, ge=0)
    detour_probability: float = Field(1.0, ge=0, le=1)
    detour_depth: int = Field(1, ge=1)
    reflection: str = "Wait, that is wrong: {critique}"
    backtrack: str = "Let me go back and redo that step."
    seed: int = 0
    # journey traces: detours (the correct path with detours) or search (the whole search, in the
    # tree's order: trees from a search procedure such as countdown_search_trees)
    journey: Literal["detours", "search"] = "detours"
    # journey segments that get no loss (SFT): the wrong steps, the reflections, the backtracks
    mask: list[Literal["wrong", "reflection", "backtrack"]] = []


class RewardRef(BaseModel):
    """A reward referenced with its options: a registered name or a dotted path, what to do when
    it raises, and every other key an option (checked against the function's keyword-only
    parameters). Where a recipe names a reward, a bare name is the same as `{name: NAME}`."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str
    on_error: Literal["fail", "zero"] = "fail"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def label(self) -> str:
        """The name, with its options when it has any: `math(timeout=2)`."""
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({options})" if options else self.name


def _reward_ref(value):
    return {"name": value} if isinstance(value, str) else value


# A reward field: a bare name is the same as {name: NAME}.
RewardField = Annotated[RewardRef, BeforeValidator(_reward_ref)]


class RewardSpec(RewardRef):
    """A reward for RLVR: a reference plus its weight in the sum TRL maximises; optionally gated
    by another reward (score = this x gate: open-instruct's multiplicative format reward) and
    with a rule for completions cut at max_completion_length (their score replaced by this
    number: 0 as open-instruct's non-stop penalty does by default). docs/rewards.md."""

    weight: float = 1.0
    gate: RewardField | None = None
    truncated: float | None = None


class OnPolicySpec(_Block):
    """DPO pairs sampled from the model being trained (docs/data.md): `samples` answers per task
    prompt, scored by `reward`; correct answers are paired with incorrect ones."""

    samples: int = Field(8, ge=2)  # answers per prompt (O1 Journey: 20)
    pairs: int = Field(2, ge=1)  # at most this many pairs per prompt (O1 Journey: 5)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, gt=0)
    reward: RewardField = RewardRef(name="verifier")  # a reward of 1 (>= threshold) is correct
    threshold: float = 1.0
    batch_size: int = Field(32, gt=0)  # prompts per generate call
    seed: int = 0


class TreeBuildSpec(_Block):
    """How reasoning trees are sampled from a model (posttrain/data/build_trees.py): the
    experiment's `trees:` block, `posttrain data build-trees`, and a data source's `build_trees:`."""

    width: int = Field(4, gt=0)
    depth: int = Field(8, gt=0)
    beam: int = Field(2, gt=0)
    temperature: float = Field(1.0, gt=0)
    step_tokens: int = Field(32, gt=0)
    reward: RewardField = RewardRef(name="verifier")
    # A step judge: a task's by the task's name, a dotted path, or a model that rates steps,
    # {name: reward_model, path: PRM, threshold: 0.5} or {name: llm_judge, path: LM, ...} (docs/verifiers.md).
    judge: str | RewardRef | None = None
    include_gold: bool = False
    # Keep trees with no correct path (they still label every step, for traces: {kind: steps});
    # otherwise they are dropped and counted, as shortcut and journey traces need a correct path.
    keep_unsolved: bool = False
    batch_size: int = Field(64, gt=0)  # prompts per generate call
    seed: int = 0


class DataSource(_Block):
    """One dataset: a local file (`path`), a hub dataset (`hub`) or a generated task (`task`)."""

    path: str | None = None
    hub: str | None = None
    task: str | None = None
    name: str | None = None  # hub dataset configuration
    split: str | None = None  # hub split; for tasks: train | heldout
    n: int | None = Field(None, gt=0)  # task: how many records
    seed: int = 0  # task: generator seed
    options: dict[str, Any] = {}  # task: generator knobs
    weight: float = Field(1.0, gt=0)
    # At most this many records: the source's first ones, before weighting (LLaMA-Factory's
    # max_samples; a weight above the source's size repeats it instead).
    max_samples: int | None = Field(None, gt=0)
    columns: dict[str, str | None] = {}  # rename {their_column: our_column}; null drops a column
    format: Literal["gsm8k", "math", "tulu3_rlvr"] | None = None  # map onto the task format
    system_prompt: str | None = None  # prepended to chat prompts / messages as a system turn
    # Text prompts and answers become user and assistant turns, rendered with the model's chat
    # template (OpenRLHF's --apply_chat_template; TRL renders message lists, not text)
    apply_chat_template: bool = False
    traces: TracesSpec | None = None  # the records are reasoning trees: build these traces
    on_policy: OnPolicySpec | None = None  # DPO: task records -> pairs sampled from the policy
    # prm: task records -> reasoning trees sampled from the model the run starts from, then `traces`
    build_trees: TreeBuildSpec | None = None
    max_record_mb: float = Field(8.0, gt=0)  # a record (a line of a file) over this size is an error
    # prm: a record with no steps (an empty `completions` list, a PRM800K row with no labelled
    # step): an error naming it, or skipped and counted in the log
    empty_steps: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("path", "hub", "task") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a data source needs exactly one of 'path' (local file), 'hub' (dataset name) "
                f"or 'task' (generated); got {kinds or 'none'}"
            )
        if self.weight > 1 and self.weight != int(self.weight):
            raise ValueError(
                f"weight {self.weight}: use a fraction <= 1 to subsample, "
                "or a whole number of records (> 1) to up-sample"
            )
        return self

    @property
    def label(self) -> str:
        return self.path or self.hub or f"task:{self.task}:{self.split or 'train'}"


class DecontaminateSpec(_Block):
    """Check training records against every evaluation set (data.eval and eval.data)."""

    n: int = Field(8, gt=0)  # words per n-gram
    threshold: float = Field(0.5, gt=0, le=1)  # share of one eval record's n-grams
    action: Literal["report", "drop"] = "report"


class DataSpec(_Block):
    train: list[DataSource] = Field(min_length=1)
    eval: list[DataSource] = []
    eval_fraction: float | None = Field(None, gt=0, lt=1)
    eval_size: int | None = Field(None, gt=0)  # a count instead (alignment-handbook's test_split_size)
    decontaminate: DecontaminateSpec | None = None
    # Preference pairs longer than trainer.max_length: dropped before training, or kept for TRL
    # to truncate (its truncation_mode); both are counted in the log and env.json.
    overlong: Literal["drop", "truncate"] = "drop"
    # Methods that generate: prompts longer than this many tokens (as the chat template renders
    # them) are dropped before training and counted (TRL 1.x's removed max_prompt_length).
    max_prompt_length: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_eval(self):
        given = [name for name in ("eval", "eval_fraction", "eval_size") if getattr(self, name)]
        if len(given) > 1:
            raise ValueError(f"give one of 'eval' sources, 'eval_fraction' or 'eval_size', not {' and '.join(given)}")
        return self

    @property
    def has_eval(self) -> bool:
        return bool(self.eval or self.eval_fraction or self.eval_size)


class BatchSpec(_Block):
    per_device: int = Field(8, gt=0)
    global_: int | None = Field(None, alias="global", gt=0)


class WandbSpec(_Block):
    project: str = "posttrain"
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: list[str] = []
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"


class TrackingSpec(_Block):
    wandb: WandbSpec | None = None


def one_line(value):
    """`value` (a string, a list of strings, or None) unless one of them holds a control
    character: each goes into one line of a script or a path."""
    for text in [] if value is None else [value] if isinstance(value, str) else value:
        if has_control(text):
            raise ValueError(f"{text!r} holds a control character (a newline, ...)")
    return value


class VllmServerSpec(_Block):
    """One more node in the job that serves generations with `trl vllm-serve`, for GRPO with
    `vllm_mode: server` (open-r1's layout): its address reaches the training nodes at job time."""

    port: int = Field(8000, gt=0, lt=65536)
    tensor_parallel_size: int = Field(1, gt=0)
    data_parallel_size: int = Field(1, gt=0)
    command: list[str] = ["trl", "vllm-serve"]  # the server program (its --model, --port, ... follow)
    args: list[str] = []  # more arguments for it, e.g. ["--gpu_memory_utilization", "0.9"]

    @field_validator("command", "args")
    @classmethod
    def _one_line(cls, value):
        return one_line(value)


class SlurmSpec(_Block):
    """The job script `posttrain launch --slurm` writes (see docs/launching.md)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time: str | None = None  # sbatch --time: minutes (30), "HH:MM:SS", "D-HH:MM:SS"
    job_name: str | None = None  # default: the run's name
    gpus: bool = True  # request --gpus-per-node (false on CPU partitions)
    cpus_per_task: int | None = Field(None, gt=0)
    signal_seconds: int = Field(300, ge=30)  # SIGUSR1 this long before the time limit: checkpoint, requeue
    requeue: bool = True  # on that signal, requeue the job; it resumes from the checkpoint
    directives: list[str] = []  # more #SBATCH lines, e.g. "--exclusive", "--mem=0", "--constraint=h100"
    setup: list[str] = []  # shell lines before training, e.g. "module load cuda/12.4"
    # The Python that runs on the nodes. Default: this interpreter's path when there is no
    # set-up; with set-up lines, `python` as found after them (the environment they activate).
    python: str | None = None
    env: dict[str, str | int] = {}  # exported variables, e.g. NCCL_SOCKET_IFNAME: ib0, NCCL_DEBUG: WARN
    script: str | None = None  # where to write it (default: RUN_DIR/slurm/job.sbatch)
    vllm_server: VllmServerSpec | None = None  # a vLLM server node after the training nodes

    @field_validator("time", mode="before")
    @classmethod
    def _minutes(cls, value):
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("partition", "account", "qos", "job_name", "time")
    @classmethod
    def _sbatch_word(cls, value):
        """One word of sbatch's: these go into #SBATCH lines, which sbatch splits into options."""
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._+:@%,=/-]+", value):
            raise ValueError(f"{value!r} is not one word of letters, digits and ._+:@%,=/- "
                             "(it is written into an #SBATCH line)")
        return value

    @field_validator("directives", "setup", "python", "script")
    @classmethod
    def _one_line(cls, value):
        return one_line(value)

    @field_validator("env")
    @classmethod
    def _variables(cls, value):
        for key, item in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment variable's name ([A-Za-z_][A-Za-z0-9_]*)")
            try:
                one_line(str(item))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _signal_before_the_limit(self):
        if self.time is not None:
            limit = slurm_time_seconds(self.time)
            if self.signal_seconds >= limit:
                raise ValueError(f"signal_seconds ({self.signal_seconds}) must be shorter than the time "
                                 f"limit ({self.time} = {limit} s)")
        return self


def slurm_time_seconds(text: str) -> int:
    """sbatch --time in seconds: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not match:
        raise ValueError(f"time {text!r} is not a SLURM time (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S)")
    days, a, b, c = match.groups()
    a, b, c = int(a), int(b or 0), int(c or 0)
    if days is not None:  # D-H[:M[:S]]
        return int(days) * 86400 + a * 3600 + b * 60 + c
    if c or match.group(4) is not None:  # H:M:S
        return a * 3600 + b * 60 + c
    return a * 60 + b  # M or M:S


class LaunchSpec(_Block):
    """How `posttrain launch` starts the run (see docs/launching.md)."""

    nodes: int = Field(1, gt=0)
    gpus_per_node: int = Field(1, gt=0)  # processes per node: GPUs, or CPU processes
    backend: Literal["auto", "python", "torchrun", "accelerate"] = "auto"
    zero: Literal[0, 1, 2, 3] = 0  # DeepSpeed ZeRO stage; 0: none
    offload: bool = False  # ZeRO-3: parameters and optimizer states on CPU
    fsdp: bool = False  # FSDP2 instead of DeepSpeed
    # One's own DeepSpeed JSON (relative to the recipe) instead of a shipped ZeRO config:
    # accelerate launch --use_deepspeed --deepspeed_config_file, as open-instruct launches.
    deepspeed_config: str | None = None
    port: int = Field(29500, gt=0, lt=65536)
    slurm: SlurmSpec = SlurmSpec()

    @model_validator(mode="after")
    def _consistent(self):
        if self.zero and self.fsdp:
            raise ValueError("choose DeepSpeed ZeRO (zero) or FSDP (fsdp), not both")
        if self.deepspeed_config and (self.zero or self.fsdp):
            raise ValueError("deepspeed_config is a whole DeepSpeed configuration (its zero_optimization.stage "
                             "picks the stage); remove zero / fsdp, or deepspeed_config")
        if self.offload and self.zero != 3:
            raise ValueError("offload needs zero: 3 (the shipped ZeRO-3 offload config)")
        if (self.zero or self.fsdp or self.deepspeed_config) and self.backend in ("python", "torchrun"):
            raise ValueError(f"ZeRO and FSDP run through accelerate; use backend: accelerate or auto, not {self.backend}")
        if self.backend == "python" and self.nodes * self.gpus_per_node > 1:
            raise ValueError("backend python starts one process; use torchrun or accelerate for several")
        return self


# A budget by kind, and the run key that sets it (posttrain/trainers/budget.py counts them).
BUDGETS = {"seconds": "max_train_seconds", "tokens": "max_train_tokens", "flops": "max_train_flops"}


class RunSpec(_Block):
    name: str | None = None  # default: the recipe file's name; a name (or relative path) inside dir
    dir: str = "runs"
    # Stop training (and save the final model as usual) once this many seconds of training have
    # passed, counted across resumes; the lr schedule still follows trainer.max_steps.
    max_train_seconds: float | None = Field(None, gt=0)
    # Budgets that do not depend on the machine (posttrain/trainers/budget.py): stop once this
    # many tokens have been trained on, or this many estimated FLOPs spent (forward + backward,
    # and a GRPO run's generation), counted across resumes. The lr schedule follows max_steps.
    max_train_tokens: int | None = Field(None, gt=0)
    max_train_flops: float | None = Field(None, gt=0)

    @field_validator("name")
    @classmethod
    def _inside_dir(cls, value):
        problem = None if value is None else name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("dir")
    @classmethod
    def _one_line(cls, value):
        return one_line(value)


STRATEGIES = ("majority", "best_of_n", "weighted_majority", "beam_search", "lookahead", "dvts")
SEARCH_STRATEGIES = ("beam_search", "lookahead", "dvts")


class TestTimeSpec(_Block):
    """Test-time compute curves (posttrain/evaluation/test_time.py, docs/verifiers.md): each
    strategy at each budget (N generations per question), its accuracy and generated tokens,
    questions binned by difficulty, the best strategy per bin and budget."""

    budgets: list[int] = Field([1, 2, 4, 8, 16], min_length=1)
    strategies: list[Literal[STRATEGIES]] = ["majority", "best_of_n", "weighted_majority", "beam_search"]
    # The process reward model that guides search and, unless `verifier` says otherwise, ranks
    # whole answers; for method: prm (and reward) the run's own final/ when not given.
    prm: str | None = None
    verifier: RewardField | None = None  # ranks whole answers (best_of_n, weighted_majority)
    aggregate: Literal["min", "last", "product", "mean"] = "last"  # a PRM's step scores -> one score
    beam_width: int = Field(4, gt=0)  # M: candidates sampled from each kept beam (N/M beams kept)
    lookahead: int = Field(1, ge=0)  # steps rolled out greedily to score a candidate (strategy lookahead)
    max_steps: int = Field(8, gt=0)
    step_tokens: int = Field(32, gt=0)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    bins: int = Field(5, gt=0)  # difficulty levels, by the model's own pass rate (1: easiest)
    batch_size: int = Field(64, gt=0)  # prompts per generate call
    # the sampling seed; unset: the run's trainer.seed, so each seed of a `seeds:` pipeline draws
    # its own samples
    seed: int | None = None

    @model_validator(mode="after")
    def _budgets(self):
        if any(b < 1 for b in self.budgets) or sorted(set(self.budgets)) != self.budgets:
            raise ValueError(f"budgets must be increasing whole numbers >= 1; got {self.budgets}")
        return self


class EvalSpec(_Block):
    """Sample answers for held-out tasks after training and score them with a reward."""

    data: list[DataSource] = Field(min_length=1)
    # verifier: each record's own `verifier` column (numeric for arithmetic, reasoning_gym for
    # reasoning-gym tasks, ifeval for IFEval's rows, ...); or one reward for every record
    reward: RewardField = RewardRef(name="verifier")
    n: int = Field(1, gt=0)  # samples per prompt
    k: list[int] = []  # pass@k and maj@k for each k (pass@1 always)
    temperature: float = Field(0.0, ge=0)  # 0: greedy
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int = 0
    select_reward: RewardField | None = None  # best-of-n and weighted majority by this reward
    max_new_tokens: int = Field(64, gt=0)
    batch_size: int = Field(64, gt=0)  # prompts per generate call
    baseline: bool = False  # also score the model before training
    test_time: TestTimeSpec | None = None  # test-time compute curves (docs/verifiers.md)
    # What generates the answers: vllm (needs the package and a GPU), hf (posttrain's loop over
    # the transformers model), or auto: vllm where both are there, else hf (docs/evaluation.md).
    # hf: posttrain's decoding loop over the transformers model; generate: model.generate (the
    # reference the loop is tested against); vllm: vLLM (GPU); auto: vllm where usable, else hf
    engine: Literal["auto", "hf", "generate", "vllm"] = "auto"
    vllm: dict[str, Any] = {}  # keyword arguments of vllm.LLM (gpu_memory_utilization, ...)

    @model_validator(mode="after")
    def _sampling(self):
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n = {self.n} samples need temperature > 0 (greedy samples are identical)")
        if any(k < 1 or k > self.n for k in self.k):
            raise ValueError(f"every k must be between 1 and n ({self.n}); got {self.k}")
        return self


class Recipe(_Block):
    description: str | None = None
    method: str  # a row of posttrain/methods.py
    model: ModelSpec = ModelSpec()
    data: DataSpec
    peft: dict[str, Any] | None = None
    trainer: dict[str, Any] = {}
    batch: BatchSpec = BatchSpec()
    tracking: TrackingSpec = TrackingSpec()
    launch: LaunchSpec = LaunchSpec()
    run: RunSpec = RunSpec()
    eval: EvalSpec | None = None
    rewards: list[RewardSpec] = []
    dynamic_sampling: "DynamicSamplingSpec | None" = None
    reward_preflight: "RewardPreflightSpec | None" = None  # rlvr; unset: the defaults (on)
    # rlvr: in-training evaluation (trainer.eval_strategy) generates greedily instead of with the
    # training temperature (HF generation; set num_generations_eval to spare identical samples)
    eval_greedy: bool = False
    teacher: "TeacherSpec | None" = None  # distill: the model whose distributions the student learns
    # rlvr, rloo: who generates the rollouts where TRL would call model.generate (no vLLM):
    # posttrain's decoding loop (unset: the default) or TRL's own (trainers/rollouts.py)
    rollouts: Literal["posttrain", "trl"] | None = None

    @field_validator("method")
    @classmethod
    def _known_method(cls, value):
        if value not in METHODS:
            raise ValueError(f"Input should be {_choices(list(METHODS))}")
        return value


def _choices(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


class TeacherSpec(_Block):
    """distill: the teacher, loaded as the model block loads the student (a hub name, a local
    directory, a trained run's final/, a GGUF, or tiny); it must share the student's vocabulary."""

    name_or_path: str
    gguf_file: str | None = None
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    tiny: TinyModelSpec = TinyModelSpec()
    # A device of its own for the teacher's layers (cuda:1 beside a student on cuda:0), one
    # process only: the embeddings and output layer stay on the student's device, where TRL's
    # loss compares the two heads chunk by chunk (trainers/distill.py). Unset: the student's.
    device: str | None = Field(None, pattern=r"^(cpu|cuda:\d+)$")


class DynamicSamplingSpec(_Block):
    """rlvr: DAPO's dynamic sampling (posttrain/trainers/dynamic.py)."""

    max_retries: int = Field(4, ge=1)  # extra generation rounds per batch to replace zero-variance groups


class RewardPreflightSpec(_Block):
    """rlvr: before training, sample `prompts` x num_generations completions from the starting
    policy, score them with every reward, print the distribution, and stop when no group has any
    spread (trainers/rlvr.py; docs/rewards.md#the-reward-preflight)."""

    enabled: bool = True
    prompts: int = Field(4, ge=1)
    examples: int = Field(3, ge=0)  # completions printed with their scores


Recipe.model_rebuild()


# ----------------------------------------------------------------------------- experiments


class TreesSpec(TreeBuildSpec):
    """The journey-vs-shortcut experiment's `trees:` block: reasoning trees sampled from the
    phase-1 model for `questions` (posttrain data build-trees takes the same settings)."""

    questions: DataSource
    # sampled: trees sampled from the phase-1 model for `questions` (task records);
    # search: `questions` already holds trees from a search procedure (countdown_search_trees,
    # or a file of trees), used as they are, with no sampling.
    source: Literal["sampled", "search"] = "sampled"


class ExperimentSpec(_Block):
    """A journey-vs-shortcut experiment recipe (posttrain/experiments/journey.py). `phase1` and
    `phase2` are SFT recipe blocks, checked as recipes of their own with the shared `model`,
    `eval` and `description` merged in."""

    experiment: Literal["journey_vs_shortcut"]
    description: str | None = None
    model: dict[str, Any] = {}
    eval: dict[str, Any]
    phase1: dict[str, Any]
    trees: TreesSpec
    phase2: dict[str, Any]
    run: RunSpec = RunSpec()

    @property
    def seeds(self) -> list[int]:
        return list(self.phase2.get("seeds", [0, 1, 2]))

