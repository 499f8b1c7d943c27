"""Load data sources (local files, hub datasets, generated tasks) into `datasets.Dataset`s,
mix them by weight, and fingerprint each source.

Local files are read by posttrain itself so a malformed line is reported as file:line.
"""

from __future__ import annotations

import hashlib
import json
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from posttrain.data.decontaminate import EvalIndex, contaminated, record_text
from posttrain.data.formats import PROMPT_KINDS, describe_shape, format_columns, record_problem, shape
from posttrain.data.shapes import ACCEPTED, as_chat, normalise
from posttrain.data.trees import TraceOptions, TreeError, build_traces, parse_tree
from posttrain.data.verifiable import FORMATS as CONVERTERS
from posttrain.errors import DataError
from posttrain.hub import hub_unreachable_reason
from posttrain.tasks import generate


@dataclass
class LoadedSource:
    label: str
    records: list[dict]
    fingerprint: str
    used: int = 0  # records taken after weighting
    contaminated: int | None = None  # records overlapping an evaluation set (None: not checked)
    dropped: int = 0
    instruction: str | None = None  # a generated task's answer-format instruction (a system turn)
    skipped: int = 0  # records skipped at load (empty_steps: skip)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


DEFAULT_MAX_RECORD_MB = 8.0  # a data source's max_record_mb: one line (one record) at most this big


def read_jsonl(path: Path, max_record_mb: float = DEFAULT_MAX_RECORD_MB) -> tuple[list[dict], list[str]]:
    """Records and their locations ("file:line"); blank lines are skipped. A line over the size
    limit or not UTF-8 is an error naming it, before anything is tokenized."""
    limit = int(max_record_mb * (1 << 20))
    records, where = [], []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if len(raw) > limit:
                raise DataError(f"{path}:{lineno}: a record of {len(raw) / (1 << 20):.1f} MB, over the limit of "
                                f"{max_record_mb:g} MB (the data source's max_record_mb)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {exc.start} of the line); "
                                "save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
            where.append(f"{path}:{lineno}")
    return records, where


def not_a_file(path: Path) -> str:
    """What `path` is, for a path that is not a regular file."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "not a regular file")
    return f"is {kind}, not a data file" if kind != "not a regular file" else "is not a regular file"


def read_records(path: Path, max_record_mb: float = DEFAULT_MAX_RECORD_MB) -> tuple[list[dict], list[str]]:
    """A data file's records (.jsonl, .json or .parquet) and where each is ("file:line" or
    "file: record i"); a missing, unreadable or oversized one is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"{path}: {not_a_file(path)}")
    if path.suffix == ".jsonl":
        return read_jsonl(path, max_record_mb)
    records = _read_whole_file(path)
    where = [f"{path}: record {i}" for i in range(len(records))]
    limit = int(max_record_mb * (1 << 20))
    for record, location in zip(records, where):
        size = len(json.dumps(record, default=str))
        if size > limit:
            raise DataError(f"{location}: a record of {size / (1 << 20):.1f} MB, over the limit of "
                            f"{max_record_mb:g} MB (the data source's max_record_mb)")
    return records, where


def _read_whole_file(path: Path) -> list[dict]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return data
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    raise DataError(f"{path}: unsupported file type {path.suffix!r} (use .jsonl, .json or .parquet)")


def _load_hub(source) -> tuple[list[dict], str]:
    import datasets

    try:
        ds = datasets.load_dataset(source.hub, source.name, split=source.split or "train")
    except Exception as exc:  # noqa: BLE001 - datasets raises many types; the user needs the gist
        reason = hub_unreachable_reason()
        hint = f" The Hugging Face hub is unreachable ({reason}) and it is not cached." if reason else ""
        raise DataError(f"hub dataset {source.hub!r}: cannot load: {type(exc).__name__}: {exc}.{hint}") from None
    return ds.to_list(), f"hub:{source.hub}:{ds._fingerprint}"


def _rename(record: dict, columns: dict[str, str | None]) -> dict:
    """Rename {their_column: our_column}; a column mapped to null is dropped."""
    return {columns.get(k, k): v for k, v in record.items() if not (k in columns and columns[k] is None)}


def _with_system_prompt(record: dict, text: str) -> dict:
    """Prepend a system turn to a record's chat prompt (or messages); plain strings are left."""
    system = {"role": "system", "content": text}
    for key in ("prompt", "messages"):
        value = record.get(key)
        if isinstance(value, list):
            return {**record, key: [system, *[m for m in value if m.get("role") != "system"]]}
    return record


def _traces(records: list[dict], where: list[str], source) -> tuple[list[dict], list[str]]:
    spec = source.traces
    for record, location in zip(records, where):
        try:
            parse_tree(record, solved=spec.kind != "steps")
        except (TreeError, TypeError, AttributeError) as exc:
            raise DataError(f"{location}: not a valid reasoning tree: {exc}") from None
    options = TraceOptions(spec.detours, spec.detour_probability, spec.detour_depth, spec.reflection, spec.backtrack,
                           journey=spec.journey, mask=tuple(spec.mask) if spec.kind == "journey" else ())
    traces, stats = build_traces(records, spec.kind, spec.seed, options)
    sizes = (f" ({stats['words']} words, {stats['characters']} characters, {stats['detours']} detours)"
             if spec.kind not in ("pairs", "steps") else "")
    print(f"posttrain: {source.label}: {stats['records']} {spec.kind} records from {stats['trees']} trees{sizes}")
    return traces, [f"{source.label}: {spec.kind} trace {i}" for i in range(len(traces))]


def _convert(records: list[dict], where: list[str], format_name: str) -> list[dict]:
    converted = []
    for record, location in zip(records, where):
        try:
            converted.append(CONVERTERS[format_name](record))
        except (KeyError, TypeError, ValueError) as exc:
            reason = f"missing column {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DataError(f"{location}: not a {format_name} record: {reason}") from None
    return converted


def load_source(source, kind: str, tree_builder=None) -> LoadedSource:
    """Read one source, rename its columns and check every record against `kind`.
    `tree_builder(source, task_records) -> trees` samples a `build_trees:` source's trees."""
    instruction = None
    if source.path is not None:
        path = Path(source.path)
        records, where = read_records(path, source.max_record_mb)
        fingerprint = f"sha256:{_sha256_file(path)}"
    elif source.hub is not None:
        records, fingerprint = _load_hub(source)
        where = [f"hub dataset {source.hub}: row {i}" for i in range(len(records))]
    else:
        params = {"task": source.task, "split": source.split or "train", "n": source.n or 1000,
                  "seed": source.seed, **source.options}
        try:
            records = generate(**params)
        except (TypeError, ValueError) as exc:
            raise DataError(f"task {source.task!r}: {exc}") from None
        digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
        fingerprint = f"sha256:{digest}"  # of the records, instruction included
        where = [f"task {source.task}: record {i}" for i in range(len(records))]
        first = records[0]["prompt"][0] if records and isinstance(records[0].get("prompt"), list) else {}
        instruction = first.get("content") if first.get("role") == "system" else None
    if source.columns:
        records = [_rename(r, source.columns) for r in records]
    building = getattr(source, "build_trees", None) is not None
    if source.traces is not None and not building:
        records, where = _traces(records, where, source)
    if source.format is not None:
        records = _convert(records, where, source.format)
    if getattr(source, "apply_chat_template", False):
        records = [as_chat(r) if isinstance(r, dict) else r for r in records]
    if source.system_prompt is not None:
        records = [_with_system_prompt(r, source.system_prompt) for r in records]
    if building:
        if tree_builder is None:
            raise DataError(f"{source.label}: build_trees sources are sampled by the prm trainer only")
        tasks = []
        for record, location in zip(records, where):
            try:
                tasks.append(normalise(record, "task"))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DataError(f"{location}: {exc}") from None
        trees = tree_builder(source, tasks)
        if not trees:
            raise DataError(f"{source.label}: no tree sampled from the model has a correct path; sample wider "
                            "(build_trees.width), deeper, or set include_gold: true")
        records, where = _traces(trees, [f"{source.label}: sampled tree {i}" for i in range(len(trees))], source)
    if not records:
        raise DataError(f"{source.label}: no records")
    if getattr(source, "on_policy", None) is not None:
        kind = "task"  # prompts to sample pairs for; the DPO trainer turns them into pairs
    shaped, shaped_where, skipped = [], [], 0
    skip_empty = kind == "steps" and getattr(source, "empty_steps", "error") == "skip"
    for record, location in zip(records, where):
        try:
            record = normalise(record, kind)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if skip_empty and "no labelled step" in str(exc):
                skipped += 1
                continue
            raise DataError(f"{location}: {exc}") from None
        if skip_empty and isinstance(record, dict) and record.get("completions") == []:
            skipped += 1
            continue
        shaped.append(record)
        shaped_where.append(location)
    if skipped:
        print(f"posttrain: {source.label}: skipped {skipped} records with no steps (empty_steps: skip)")
        if not shaped:
            raise DataError(f"{source.label}: every record has no steps")
    records, where = shaped, shaped_where
    first = None
    for record, location in zip(records, where):
        problem = record_problem(record, kind) or rendering_problem(record, kind)
        if problem:
            raise DataError(f"{location}: {problem} (shapes read: {ACCEPTED[kind]}; "
                            "rename or drop columns with `columns:`, see docs/data.md)")
        columns = shape(record, kind)
        if first is None:
            first = (columns, location)
        elif columns != first[0]:
            raise DataError(f"{location}: {describe_shape(columns)}, but {first[1]} has {describe_shape(first[0])}; "
                            "one dataset must use one format (convert the records, or split the file)")
    return LoadedSource(source.label, records, fingerprint, instruction=instruction, skipped=skipped)


def apply_weight(records: list[dict], weight: float, rng: random.Random) -> list[dict]:
    """A weight <= 1 keeps that fraction (a seeded sample); an integer > 1 is a record count,
    up-sampling by repetition when it exceeds the source (open-instruct's mixer semantics)."""
    if weight <= 1:
        count = max(1, round(len(records) * weight))
        return rng.sample(records, count) if count < len(records) else list(records)
    count = int(weight)
    repeats, rest = divmod(count, len(records))
    return records * repeats + rng.sample(records, rest)


# Columns TRL's SFT, DPO, KTO and reward trainers read from each row and render with (TRL 1.x:
# `chat_template_kwargs` a mapping, `tools` a list of JSON schemas or its JSON text): passed on.
PASSED_ON = ("chat_template_kwargs", "tools")


def rendering_problem(record: dict, kind: str) -> str | None:
    """Why a record's rendering columns cannot be honoured (None: they can): a column that
    changes how the chat template renders a row is used or refused, never dropped."""
    kwargs = record.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        return f"'chat_template_kwargs' must be a mapping (e.g. {{enable_thinking: false}}), got {kwargs!r}"
    present = [c for c in PASSED_ON if record.get(c) is not None]
    if kind == "steps" and present:
        return (f"'{present[0]}': a process reward model's records are not rendered with the chat template "
                "(trainers/prm.py tokenizes prompt and steps as text); remove the column")
    if kind in PROMPT_KINDS and record.get("tools") is not None:
        return ("'tools': generation renders every prompt with the same tools (GRPO's trainer.tools), not a "
                "row's own; remove the column")
    return None


def _keep_columns(records: list[dict], kind: str) -> tuple[list[dict], list[str]]:
    """The training columns (and, for tasks, every column: rewards read them), and the names of
    the columns left out. The rendering columns TRL reads per row are passed on, `tools` as
    its JSON text (one Arrow type whatever the schemas hold)."""
    if kind in PROMPT_KINDS:
        return records, []
    kept, ignored = [], set()
    for r in records:
        # loss_mask: spans of a journey trace's completion that get no loss (data/trees.py)
        columns = (*format_columns(r, kind), *(("loss_mask",) if kind == "sft" and "loss_mask" in r else ()),
                   *(c for c in PASSED_ON if r.get(c) is not None))
        row = {c: r[c] for c in columns}
        if isinstance(row.get("tools"), list):
            row["tools"] = json.dumps(row["tools"])
        kept.append(row)
        ignored.update(c for c in r if c not in columns)
    return kept, sorted(ignored)


def uniform_template_kwargs(records: list[dict], where: str) -> dict:
    """The chat_template_kwargs every record gives ({} for none), for generation, which renders
    all prompts one way (GRPO's config.chat_template_kwargs): rows that differ are an error."""
    values = {json.dumps(r.get("chat_template_kwargs") or {}, sort_keys=True) for r in records}
    if len(values) > 1:
        shown = " and ".join(sorted(values)[:2])
        raise DataError(f"{where}: rows give different chat_template_kwargs ({shown}); generation renders every "
                        "prompt one way: split the data into runs, or set model.chat_template_kwargs")
    return json.loads(values.pop()) if values else {}


def apply_rows_template_kwargs(tokenizer, rows: list[dict], where: str, defaults: dict) -> dict:
    """Render with the rows' own chat_template_kwargs (one set for all, uniform_template_kwargs)
    over `defaults` (model.chat_template_kwargs) from now on; the merged set, or {} when the
    rows give none (the tokenizer is then left as it is)."""
    from posttrain.chat_templates import set_template_kwargs

    row = uniform_template_kwargs(rows, where)
    if not row:
        return {}
    merged = {**defaults, **row}
    set_template_kwargs(tokenizer, merged)
    return merged


@contextmanager
def rows_rendering(tokenizer, rows: list[dict], where: str):
    """apply_rows_template_kwargs for a while (sampling on-policy pairs, trees), over the
    tokenizer's own set, which is back after; yields the rows' own set ({} for none)."""
    from posttrain.chat_templates import set_template_kwargs, template_kwargs

    before = template_kwargs(tokenizer)
    row = uniform_template_kwargs(rows, where)
    if row:
        set_template_kwargs(tokenizer, {**before, **row})
    try:
        yield row
    finally:
        if row:
            set_template_kwargs(tokenizer, before)


def _same_template_kwargs(records: list[dict], labels: list[str]) -> None:
    """Every row gives chat_template_kwargs with the same keys, or none does: a dataset stores
    one mapping type per column, so a key one row lacks would reach the template as None."""
    first = None
    for record, label in zip(records, labels):
        keys = tuple(sorted(record["chat_template_kwargs"])) if "chat_template_kwargs" in record else None
        if first is None:
            first = (keys, label)
        elif keys != first[0]:
            def said(k):
                return f"chat_template_kwargs keys {list(k)}" if k is not None else "no chat_template_kwargs"

            raise DataError(f"{label}: a row with {said(keys)}, but {first[1]} has {said(first[0])}: every row must "
                            "give the same keys (a missing key would reach the template as None); add them, or set "
                            "model.chat_template_kwargs for the defaults")


def build_mixture(sources, kind: str, seed: int, decontaminate=None,
                  pair_sampler=None, tree_builder=None) -> tuple[list[dict], list[LoadedSource]]:
    """Load, weight, mix and shuffle sources. `decontaminate` is (EvalIndex, threshold, drop):
    records overlapping an evaluation set are counted per source, and dropped if asked.
    `pair_sampler(source, records)` turns an on-policy source's task records into pairs."""
    rng = random.Random(seed)
    mixed, loaded = [], []
    formats: dict[tuple, str] = {}  # column sets -> the first source with them
    typed: dict[tuple, str] = {}  # columns with text or messages -> the first source with them
    for source in sources:
        item = load_source(source, kind, tree_builder)
        if decontaminate is not None:
            index, threshold, drop = decontaminate
            flagged = set(contaminated(item.records, index, threshold))
            item.contaminated = len(flagged)
            total = len(item.records)
            if drop and flagged:
                item.records = [r for i, r in enumerate(item.records) if i not in flagged]
                item.dropped = len(flagged)
                if not item.records:
                    raise DataError(f"{item.label}: every record overlaps an evaluation set")
            outcome = ""
            if flagged:
                outcome = f"; {item.dropped} dropped" if drop else "; kept (data.decontaminate.action: report)"
            print(f"posttrain: decontamination: {len(flagged)} of {total} records of {item.label} overlap an "
                  f"evaluation set ({index.n}-word runs, threshold {threshold:g}){outcome}")
        capped = getattr(source, "max_samples", None)
        chosen = apply_weight(item.records[:capped] if capped else item.records, source.weight, rng)
        if getattr(source, "on_policy", None) is not None:
            if pair_sampler is None:
                raise DataError(f"{item.label}: on-policy pairs are sampled for data.train by the dpo and reward "
                                "trainers only")
            chosen = pair_sampler(source, chosen)
            if not chosen:
                raise DataError(f"{item.label}: on-policy sampling gave no pair (every prompt's answers were "
                                "all correct or all wrong); sample more answers or use other prompts")
        item.used = len(chosen)
        kept, ignored = _keep_columns(chosen, kind)
        if ignored:
            trained = ", ".join(c for c in kept[0] if c not in ("loss_mask",)) if kept else ""
            print(f"posttrain: {item.label}: ignored columns: {', '.join(ignored)} (the {kind} records keep "
                  f"{trained})")
        if kept:
            formats.setdefault(tuple(sorted(c for c in kept[0] if c not in ("loss_mask", *PASSED_ON))), item.label)
            typed.setdefault(shape(kept[0], kind if "label" not in kept[0] else "unpaired"), item.label)
        mixed.extend(kept)
        loaded.append(item)
    if len(formats) > 1:
        raise DataError(
            "the training sources mix record formats "
            f"({' and '.join('+'.join(s) + ' (' + label + ')' for s, label in sorted(formats.items()))}); "
            "convert them to one format or rename columns with `columns:`"
        )
    if len(typed) > 1:
        raise DataError("the training sources mix text and message lists ("
                        + " and ".join(f"{label}: {describe_shape(s)}" for s, label in typed.items())
                        + "); convert them to one format")
    _same_template_kwargs(mixed, [item.label for item in loaded for _ in range(item.used)])
    rng.shuffle(mixed)
    return mixed, loaded


def held_out(data_spec, train: list[dict], kind: str, seed: int,
             tree_builder=None) -> tuple[list[dict], list[dict] | None, list]:
    """(train, eval records or None, the eval sources read): `data.eval` sources, or the first
    `data.eval_fraction` (or `data.eval_size` records) of the shuffled training mixture, taken
    out of it."""
    if data_spec.eval:
        evaluation, sources = build_mixture(data_spec.eval, kind, seed, tree_builder=tree_builder)
        return train, evaluation, sources
    if data_spec.eval_fraction or data_spec.eval_size:
        cut = data_spec.eval_size or max(1, round(len(train) * data_spec.eval_fraction))
        if cut >= len(train):
            asked = (f"eval_size {cut}" if data_spec.eval_size else f"eval_fraction {data_spec.eval_fraction}")
            raise DataError(f"{asked} of {len(train)} records leaves none to train on")
        return train[cut:], train[:cut], []
    return train, None, []


def prompt_tokens(tokenizer, prompt) -> int:
    """A prompt's length in tokens as generation sees it: a chat prompt rendered with its
    generation prompt, a text prompt as it is."""
    from posttrain.chat_templates import render

    if isinstance(prompt, list):
        return len(render(tokenizer, prompt, add_generation_prompt=True, tokenize=True))
    return len(tokenizer(prompt, add_special_tokens=False).input_ids)


def drop_long_prompts(records: list[dict], tokenizer, limit: int | None, where: str) -> tuple[list[dict], int]:
    """Records whose prompt fits in `limit` tokens (data.max_prompt_length), and how many were
    dropped (printed); none left is a DataError naming `where`."""
    if limit is None or not records:
        return records, 0
    kept = [r for r in records if prompt_tokens(tokenizer, r["prompt"]) <= limit]
    dropped = len(records) - len(kept)
    if dropped:
        print(f"posttrain: {where}: dropped {dropped} of {len(records)} prompts longer than "
              f"data.max_prompt_length ({limit} tokens)")
    if not kept:
        raise DataError(f"{where}: every prompt is longer than data.max_prompt_length ({limit} tokens)")
    return kept, dropped


def to_dataset(records: list[dict]):
    import datasets

    return datasets.Dataset.from_list(records)


def decontamination(spec, kind: str):
    """What build_mixture checks training records with, when the recipe (`spec`, its schema)
    asks for it (data.decontaminate): (index of every evaluation set, threshold, drop?); else
    None. `kind`: the method's data kind, which data.eval is read as. Every trainer passes it."""
    options = spec.data.decontaminate
    if options is None:
        return None
    return decontamination_index(spec, options.n, kind), options.threshold, options.action == "drop"


def decontamination_index(spec, n: int, kind: str = "sft") -> EvalIndex:
    """An n-gram index over every evaluation set of a recipe (`spec`, its schema): data.eval
    (records of the method's `kind`) and eval.data (task records)."""
    sources = [(s, kind) for s in spec.data.eval] + [(s, "task") for s in (spec.eval.data if spec.eval else [])]
    texts = [record_text(r) for source, kind in sources for r in load_source(source, kind).records]
    return EvalIndex.build(texts, n)
