"""posttrain's decoding loop (posttrain/sampling.py) against transformers' `model.generate`, the
reference: greedy outputs token for token (rows that stop at different steps, left padding,
prefixes, several batches), sampling from the same distribution as generate (both checked
against the softmax of the warped logits), and the fall-back to generate for generation
settings the loop does not apply. Plus thread hygiene (posttrain/threads.py)."""

import os

import pytest
import torch

from posttrain import sampling
from posttrain.recipe.schema import TinyModelSpec
from posttrain.threads import _cgroup_quota, available_cores, configure_threads, single_thread_env

SPEC = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128)
PROMPTS = [[{"role": "user", "content": text}] for text in
           ["Compute 3 + 4.", "Compute 12 - 5 + 100 - 7.", "Hi", "Compute 9 * 9 - 1.", "What is 2 + 2? Think.",
            "Compute 1 + 1 + 1 + 1 + 1 + 1.", "x", "Compute 50 - 25."]]


@pytest.fixture(scope="module")
def tiny(noisy_tiny):
    model, tokenizer = noisy_tiny(SPEC)
    model.eval()
    return model, tokenizer


def _with_frequent_stops(model, tokenizer):
    """Make the two tokens that most rows' greedy outputs hold (at different steps) end tokens
    too, so rows stop at different steps."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in PROMPTS]
    tokenizer.padding_side = "left"
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    rows = [set(row.tolist()) for row in out[:, inputs["input_ids"].shape[1]:]]
    stops = sorted({t for row in rows for t in row}, key=lambda t: -sum(t in row for row in rows))[:2]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *stops]
    return stops


def _plain(model, tokenizer, prompts, *, max_new_tokens, batch_size, prefixes=None):
    """The plain loop: model.generate per batch, in the given order."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    if prefixes:
        texts = [t + x for t, x in zip(texts, prefixes)]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    out = []
    for start in range(0, len(texts), batch_size):
        inputs = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        out += tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    tokenizer.padding_side = side
    return out


def test_greedy_answers_equal_model_generate_token_for_token(tiny):
    model, tokenizer = tiny
    saved = model.generation_config.eos_token_id
    try:
        stops = _with_frequent_stops(model, tokenizer)
        ours = sampling.generate_answers(model, tokenizer, PROMPTS, max_new_tokens=24, batch_size=3)
        lengths = [len(tokenizer(a[0], add_special_tokens=False)["input_ids"]) for a in ours]
        assert len(set(lengths)) > 2, lengths  # rows did stop at different steps
        assert [a[0] for a in ours] == _plain(model, tokenizer, PROMPTS, max_new_tokens=24, batch_size=3)
        assert stops
        # and with partly written answers to continue
        prefixes = ["Step 1:", "", "3 + 4 = 7\n", "Answer", "", "1", "Wait,", ""]
        ours = sampling.generate_answers(model, tokenizer, PROMPTS, max_new_tokens=16, batch_size=4, prefixes=prefixes)
        assert [a[0] for a in ours] == _plain(model, tokenizer, PROMPTS, max_new_tokens=16, batch_size=4,
                                              prefixes=prefixes)
    finally:
        model.generation_config.eos_token_id = saved


def test_sampling_gives_n_answers_per_prompt_reproducibly(tiny):
    model, tokenizer = tiny
    first = sampling.generate_answers(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3, n=4,
                                      temperature=1.0, seed=3)
    assert [len(a) for a in first] == [4] * len(PROMPTS)
    assert first == sampling.generate_answers(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3, n=4,
                                              temperature=1.0, seed=3)
    assert first != sampling.generate_answers(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3, n=4,
                                              temperature=1.0, seed=4)
    assert len({a for group in first for a in group}) > len(PROMPTS)  # samples differ within a prompt


def _first_token_counts(draw, vocab: int) -> torch.Tensor:
    counts = torch.zeros(vocab)
    for token in draw:
        counts[token] += 1
    return counts


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_samples_follow_the_same_distribution_as_generate(tiny, temperature, top_p):
    """The first sampled token, 3,000 times from one prompt (one prefill shared by all samples),
    against the distribution generate samples from: softmax of the logits after temperature,
    top-k (generate's default 50) and top-p. generate's own samples are checked the same way."""
    from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    model, tokenizer = tiny
    text = tokenizer.apply_chat_template(PROMPTS[1], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1, :].float()
    scores = TopPLogitsWarper(top_p)(None, TopKLogitsWarper(50)(None, TemperatureLogitsWarper(temperature)(None, logits)))
    expected = torch.softmax(scores, dim=-1)[0]
    n = 3000
    torch.manual_seed(0)
    ours = sampling.decode(model, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=1, n=n,
                           stops=set(), warpers=sampling._warpers(model, temperature, top_p))
    with torch.no_grad():
        theirs = model.generate(**inputs, max_new_tokens=1, do_sample=True, temperature=temperature, top_p=top_p,
                                num_return_sequences=n, pad_token_id=tokenizer.pad_token_id)[:, -1].tolist()
    vocab = expected.shape[0]
    for draw in ([t[0] for t in ours], theirs):
        counts = _first_token_counts(draw, vocab)
        assert counts[expected == 0].sum() == 0  # nothing outside top-k / top-p
        likely = expected > 0.01
        # each likely token within 4.5 standard errors of its probability
        error = (expected * (1 - expected) / n).sqrt()
        assert ((counts / n - expected).abs()[likely] <= 4.5 * error[likely] + 1e-9).all()


def test_settings_the_loop_does_not_apply_go_through_generate(tiny):
    model, tokenizer = tiny
    assert sampling.unsupported_settings(model) == []
    saved = model.generation_config.repetition_penalty
    try:
        model.generation_config.repetition_penalty = 1.3
        assert sampling.unsupported_settings(model) == ["repetition_penalty"]
        ours = sampling.generate_answers(model, tokenizer, PROMPTS[:4], max_new_tokens=12, batch_size=2)
        assert [a[0] for a in ours] == _plain(model, tokenizer, PROMPTS[:4], max_new_tokens=12, batch_size=2)
    finally:
        model.generation_config.repetition_penalty = saved


def test_a_cut_answer_loses_its_unfinished_last_line(tiny):
    model, tokenizer = tiny
    saved = model.generation_config.eos_token_id
    try:
        model.generation_config.eos_token_id = [tokenizer.eos_token_id]
        full = sampling.generate_answers(model, tokenizer, PROMPTS[:3], max_new_tokens=20, batch_size=3)
        trimmed = sampling.generate_answers(model, tokenizer, PROMPTS[:3], max_new_tokens=20, batch_size=3,
                                            trim_unfinished=True)
    finally:
        model.generation_config.eos_token_id = saved
    for (whole,), (cut,) in zip(full, trimmed):
        body = whole.rstrip("\n")
        assert cut == (whole if "\n" not in body else body[: body.rfind("\n") + 1])


# ----------------------------------------------------------------------------- threads


def test_the_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_quota(tmp_path) == 1.5
    assert available_cores(tmp_path) == min(len(os.sched_getaffinity(0)), 2)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_quota(v1) == 0.5 and available_cores(v1) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _cgroup_quota(v1) is None
    assert _cgroup_quota(tmp_path / "none") is None


def test_torch_threads_are_the_cores_shared_by_the_ranks_on_the_node(monkeypatch, capsys):
    before = torch.get_num_threads()
    cores = available_cores()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        assert configure_threads() == cores == torch.get_num_threads()
        assert f"{cores} CPU thread" in capsys.readouterr().out
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))
        assert configure_threads(quiet=True) == 1 == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
        assert configure_threads() == 1
        assert "(OMP_NUM_THREADS)" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


def _thread_settings():
    import os

    return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def test_helper_processes_run_single_threaded():
    from posttrain.rewards.bounded import BoundedPool, call_bounded

    assert single_thread_env({"A": "1"})["OMP_NUM_THREADS"] == "1"
    pool = BoundedPool(seconds=30, processes=1)
    try:
        status, value = call_bounded(pool, _thread_settings)
    finally:
        pool.close()
    assert status == "ok" and value == {k: "1" for k in value}


def test_the_sandbox_runs_single_threaded():
    from posttrain.rewards import sandbox

    if sandbox.sandbox_problem():
        pytest.skip(sandbox.sandbox_problem())
    result = sandbox.run_untrusted("import os\nprint(os.environ.get('OMP_NUM_THREADS'), os.environ.get('OPENBLAS_NUM_THREADS'))")
    assert result.stdout.split() == ["1", "1"]



# ----------------------------------------------------------------------------- engines


def test_the_engines_share_one_interface_and_greedy_answers_agree(tiny):
    """make_engine("hf") (posttrain's loop) and make_engine("generate") (model.generate) through
    the same generate(prompts, n, sampling, prefixes): greedy answers equal, with and without
    prefixes; as_engine passes an engine through and wraps a model in the loop."""
    model, tokenizer = tiny
    loop = sampling.make_engine("hf", model=model, tokenizer=tokenizer, batch_size=3)
    plain = sampling.make_engine("generate", model=model, tokenizer=tokenizer, batch_size=3)
    assert (loop.name, plain.name) == ("posttrain", "generate")
    greedy = sampling.Sampling(max_new_tokens=16)
    assert loop.generate(PROMPTS, 1, greedy) == plain.generate(PROMPTS, 1, greedy)
    assert loop.generate(PROMPTS, 1, greedy) == [[a] for a in _plain(model, tokenizer, PROMPTS, max_new_tokens=16,
                                                                     batch_size=len(PROMPTS))]
    prefixes = ["Step", "", "1", "The", "", "a", "b", "Answer:"]
    assert loop.generate(PROMPTS, 1, greedy, prefixes) == plain.generate(PROMPTS, 1, greedy, prefixes)
    assert sampling.as_engine(loop, tokenizer) is loop
    assert isinstance(sampling.as_engine(model, tokenizer), sampling.LoopEngine)
    with pytest.raises(ValueError, match="saved model directory"):
        sampling.make_engine("vllm", tokenizer=tokenizer)


def test_the_engines_sample_n_seeded_answers_per_prompt(tiny):
    model, tokenizer = tiny
    for name in ("hf", "generate"):
        engine = sampling.make_engine(name, model=model, tokenizer=tokenizer, batch_size=4)
        drawn = sampling.Sampling(max_new_tokens=8, temperature=1.0, seed=3)
        first = engine.generate(PROMPTS, 4, drawn)
        assert [len(group) for group in first] == [4] * len(PROMPTS)
        assert first == engine.generate(PROMPTS, 4, drawn)  # seeded
        assert len({a for group in first for a in group}) > len(PROMPTS), name
