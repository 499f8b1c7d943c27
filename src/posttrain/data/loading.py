"""Load data sources (local files, hub datasets, generated tasks) into `datasets.Dataset`s,
mix them by weight, and fingerprint each source.

Local files are read by posttrain itself so a malformed line is reported as file:line.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

from posttrain.data.decontaminate import EvalIndex, contaminated, record_text
from posttrain.data.formats import format_columns, record_problem
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
    contaminated: int = 0  # records overlapping an evaluation set
    dropped: int = 0


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Records and their locations ("file:line"); blank lines are skipped."""
    records, where = [], []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
            where.append(f"{path}:{lineno}")
    return records, where


def _read_file(path: Path) -> tuple[list[dict], list[str]]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    records = _read_whole_file(path)
    return records, [f"{path}: record {i}" for i in range(len(records))]


def _read_whole_file(path: Path) -> list[dict]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return data
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
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


def _rename(record: dict, columns: dict[str, str]) -> dict:
    return {columns.get(k, k): v for k, v in record.items()}


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
            parse_tree(record)
        except (TreeError, TypeError, AttributeError) as exc:
            raise DataError(f"{location}: not a valid reasoning tree: {exc}") from None
    options = TraceOptions(spec.detours, spec.detour_probability, spec.detour_depth, spec.reflection, spec.backtrack)
    traces, stats = build_traces(records, spec.kind, spec.seed, options)
    sizes = (f" ({stats['words']} words, {stats['characters']} characters, {stats['detours']} detours)"
             if spec.kind != "pairs" else "")
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


def load_source(source, kind: str) -> LoadedSource:
    """Read one source, rename its columns and check every record against `kind`."""
    if source.path is not None:
        path = Path(source.path)
        records, where = _read_file(path)
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
        fingerprint = f"sha256:{digest}"
        where = [f"task {source.task}: record {i}" for i in range(len(records))]
    if source.columns:
        records = [_rename(r, source.columns) for r in records]
    if source.traces is not None:
        records, where = _traces(records, where, source)
    if source.format is not None:
        records = _convert(records, where, source.format)
    if source.system_prompt is not None:
        records = [_with_system_prompt(r, source.system_prompt) for r in records]
    if not records:
        raise DataError(f"{source.label}: no records")
    if getattr(source, "on_policy", None) is not None:
        kind = "task"  # prompts to sample pairs for; the DPO trainer turns them into pairs
    for record, location in zip(records, where):
        problem = record_problem(record, kind)
        if problem:
            raise DataError(f"{location}: {problem}")
    return LoadedSource(source.label, records, fingerprint)


def apply_weight(records: list[dict], weight: float, rng: random.Random) -> list[dict]:
    """A weight <= 1 keeps that fraction (a seeded sample); an integer > 1 is a record count,
    up-sampling by repetition when it exceeds the source (open-instruct's mixer semantics)."""
    if weight <= 1:
        count = max(1, round(len(records) * weight))
        return rng.sample(records, count) if count < len(records) else list(records)
    count = int(weight)
    repeats, rest = divmod(count, len(records))
    return records * repeats + rng.sample(records, rest)


def _keep_columns(records: list[dict], kind: str) -> list[dict]:
    """Keep the training columns (and, for tasks, every column: rewards read them)."""
    if kind == "task":
        return records
    return [{c: r[c] for c in format_columns(r, kind)} for r in records]


def build_mixture(sources, kind: str, seed: int, decontaminate=None,
                  pair_sampler=None) -> tuple[list[dict], list[LoadedSource]]:
    """Load, weight, mix and shuffle sources. `decontaminate` is (EvalIndex, threshold, drop):
    records overlapping an evaluation set are counted per source, and dropped if asked.
    `pair_sampler(source, records)` turns an on-policy source's task records into pairs."""
    rng = random.Random(seed)
    mixed, loaded = [], []
    for source in sources:
        item = load_source(source, kind)
        if decontaminate is not None:
            index, threshold, drop = decontaminate
            flagged = set(contaminated(item.records, index, threshold))
            item.contaminated = len(flagged)
            if drop and flagged:
                item.records = [r for i, r in enumerate(item.records) if i not in flagged]
                item.dropped = len(flagged)
                if not item.records:
                    raise DataError(f"{item.label}: every record overlaps an evaluation set")
        chosen = apply_weight(item.records, source.weight, rng)
        if getattr(source, "on_policy", None) is not None:
            if pair_sampler is None:
                raise DataError(f"{item.label}: on-policy pairs are sampled by the DPO trainer only")
            chosen = pair_sampler(source, chosen)
            if not chosen:
                raise DataError(f"{item.label}: on-policy sampling gave no pair (every prompt's answers were "
                                "all correct or all wrong); sample more answers or use other prompts")
        item.used = len(chosen)
        mixed.extend(_keep_columns(chosen, kind))
        loaded.append(item)
    shapes = {tuple(sorted(r)) for r in mixed}
    if len(shapes) > 1:
        raise DataError(
            "the training sources mix record formats "
            f"({' and '.join('+'.join(s) for s in sorted(shapes))}); convert them to one format "
            "or rename columns with `columns:`"
        )
    rng.shuffle(mixed)
    return mixed, loaded


def to_dataset(records: list[dict]):
    import datasets

    return datasets.Dataset.from_list(records)


def decontamination_index(spec, n: int) -> EvalIndex:
    """An n-gram index over every evaluation set of a recipe (`spec`, its schema): data.eval
    (SFT records) and eval.data (task records)."""
    sources = [(s, "sft") for s in spec.data.eval] + [(s, "task") for s in (spec.eval.data if spec.eval else [])]
    texts = [record_text(r) for source, kind in sources for r in load_source(source, kind).records]
    return EvalIndex.build(texts, n)
