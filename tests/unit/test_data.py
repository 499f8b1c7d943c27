"""Data loading: formats, file:line errors, column mapping, mixtures, fingerprints, the hub."""

import json
import time

import pytest

from posttrain.data.loading import apply_weight, build_mixture, load_source
from posttrain.errors import DataError
from posttrain.recipe import DataSource

SFT_PC = {"prompt": "2+2?", "completion": "4"}
SFT_MSG = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write_jsonl(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def test_malformed_json_line_is_reported_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SFT_PC, "", SFT_PC, '{"prompt": "x", "completion": '])
    with pytest.raises(DataError, match=rf"{path}:4: not valid JSON"):
        load_source(DataSource(path=str(path)), "sft")


@pytest.mark.parametrize("record,reason", [
    ({"question": "q", "answer": "a"}, "needs messages or prompt+completion"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant turn"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "'messages[0].role' is 'robot'"),
    ({"messages": [{"role": "user", "content": 3}]}, "'messages[0].content' must be a string"),
    ({"prompt": "", "completion": "x"}, "'prompt' is empty"),
    ([1, 2], "expected a JSON object"),
])
def test_invalid_records_name_line_and_reason(tmp_path, record, reason):
    path = write_jsonl(tmp_path / "d.jsonl", [SFT_PC, "", record])
    with pytest.raises(DataError) as info:
        load_source(DataSource(path=str(path)), "sft")
    assert str(info.value).startswith(f"{path}:3: ") and reason in str(info.value)


def test_column_mapping_renames_before_checking(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "answer": "a"}])
    loaded = load_source(DataSource(path=str(path), columns={"question": "prompt", "answer": "completion"}), "sft")
    assert loaded.records == [{"prompt": "q", "completion": "a"}]


def test_json_and_parquet_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d.json").write_text(json.dumps([SFT_PC, SFT_PC]))
    pq.write_table(pa.Table.from_pylist([SFT_PC] * 3), tmp_path / "d.parquet")
    assert len(load_source(DataSource(path=str(tmp_path / "d.json")), "sft").records) == 2
    assert len(load_source(DataSource(path=str(tmp_path / "d.parquet")), "sft").records) == 3


def test_fingerprint_follows_file_content(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [SFT_PC])
    first = load_source(DataSource(path=str(path)), "sft").fingerprint
    assert load_source(DataSource(path=str(path)), "sft").fingerprint == first
    write_jsonl(path, [SFT_PC, SFT_PC])
    assert load_source(DataSource(path=str(path)), "sft").fingerprint != first


def test_weights_subsample_fractions_and_upsample_counts():
    import random

    records = [{"i": i} for i in range(10)]
    assert len(apply_weight(records, 0.3, random.Random(0))) == 3
    assert len(apply_weight(records, 1.0, random.Random(0))) == 10
    upsampled = apply_weight(records, 25, random.Random(0))
    assert len(upsampled) == 25 and {r["i"] for r in upsampled} == set(range(10))


def test_mixture_is_seeded_and_keeps_training_columns(tmp_path):
    chat = {"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}]}
    a = write_jsonl(tmp_path / "a.jsonl", [{**chat, "extra": 1}] * 4)
    sources = [DataSource(path=str(a), weight=0.5), DataSource(task="arithmetic", n=6, weight=12)]
    mixed, loaded = build_mixture(sources, "sft", seed=3)
    assert len(mixed) == 2 + 12 and [s.used for s in loaded] == [2, 12]
    assert all(set(r) == {"prompt", "completion"} for r in mixed)
    assert build_mixture(sources, "sft", seed=3)[0] == mixed


def test_max_samples_caps_a_source_at_its_first_records(tmp_path):
    """LLaMA-Factory's max_samples: the first N records, and a cap above the size is the whole
    source, never repeated (a weight above the size repeats)."""
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    capped, _ = build_mixture([DataSource(path=str(path), max_samples=4)], "sft", seed=0)
    assert sorted(r["prompt"] for r in capped) == ["q0", "q1", "q2", "q3"]
    whole, _ = build_mixture([DataSource(path=str(path), max_samples=1000)], "sft", seed=0)
    assert sorted(r["prompt"] for r in whole) == sorted(r["prompt"] for r in rows)


def test_mixing_text_and_message_sources_is_an_error_naming_both(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [SFT_PC])  # prompt/completion as text
    with pytest.raises(DataError, match="mix text and message lists") as info:
        build_mixture([DataSource(path=str(a)), DataSource(task="arithmetic", n=2)], "sft", seed=0)
    assert f"{a}: prompt as text" in str(info.value) and "task:arithmetic:train: prompt as messages" in str(info.value)


def test_mixing_message_and_prompt_formats_is_an_error(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [SFT_PC])
    b = write_jsonl(tmp_path / "b.jsonl", [SFT_MSG])
    with pytest.raises(DataError, match="mix record formats"):
        build_mixture([DataSource(path=str(a)), DataSource(path=str(b))], "sft", seed=0)


def test_uncached_hub_dataset_offline_fails_fast_and_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from posttrain.hub import hub_unreachable_reason

    hub_unreachable_reason.cache_clear()
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_source(DataSource(hub="posttrain-tests/does-not-exist"), "sft")
    assert time.monotonic() - start < 20  # not the ~48 s hub timeout
    assert "posttrain-tests/does-not-exist" in str(info.value) and "HF_HUB_OFFLINE=1" in str(info.value)
