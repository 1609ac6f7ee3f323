"""The batched multi-adapter backend: concurrent sessions on different LoRAs decoded in one batch must give each
session the reply it would get alone through PEFT, and adapters it cannot run must fall back, loudly."""

import json
import logging
import threading

import pytest

from app.backends import make_backend
from app.backends.batched import BatchedBackend, lora_support
from app.backends.decoding import Decoding
from app.backends.transformers import Generator
from retrieval.errors import AdapterError
from tuning.base import model_fingerprint

PROMPTS = ["Who guards the gate?", "Tell me about the harbour at dawn, and the boats.", "Hello."]


def random_lora(model_dir, out, *, seed, r=4, modules=("q_proj", "v_proj"), rslora=False, dora=False,
                fingerprint=None):
    import torch
    from peft import LoraConfig, get_peft_model

    from tuning.base import load_base

    model, _ = load_base(model_dir, "float32")
    peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(modules), use_rslora=rslora,
                                            use_dora=dora, task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=g) * 0.5
    peft.save_pretrained(out)
    (out / "eterna_adapter.json").write_text(json.dumps(
        {"base": {"fingerprint": fingerprint or model_fingerprint(model_dir)}}))
    return out


@pytest.fixture(scope="module")
def adapters(tiny_llm_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("loras")
    return {
        "a": random_lora(tiny_llm_dir, root / "a", seed=1),
        "b": random_lora(tiny_llm_dir, root / "b", seed=2, r=8, modules=("q_proj", "k_proj", "o_proj", "down_proj")),
        "c": random_lora(tiny_llm_dir, root / "c", seed=3, r=2, modules=("up_proj", "gate_proj"), rslora=True),
    }


def reference(tiny_llm_dir, adapters, jobs, dec):
    gen = Generator(tiny_llm_dir, "float32")
    for name, path in adapters.items():
        gen.add_adapter(name, path)
    return {j: gen.generate([{"role": "user", "content": j[0]}], dec, adapter=j[1]).text for j in jobs}


def run_concurrently(backend, jobs, dec):
    out, errors = {}, []

    def one(job):
        try:
            out[job] = backend.generate([{"role": "user", "content": job[0]}], dec, adapter=job[1]).text
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=one, args=(j,)) for j in jobs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    return out


def test_mixed_adapters_in_one_batch_match_peft_one_at_a_time(tiny_llm_dir, adapters):
    dec = Decoding(max_new_tokens=8)
    jobs = [(p, a) for p in PROMPTS for a in (None, "a", "b", "c")]
    ref = reference(tiny_llm_dir, adapters, jobs, dec)
    assert len({ref[(PROMPTS[0], a)] for a in (None, "a", "b", "c")}) > 1  # the adapters change the replies
    # the scheduler gathers until the batch is full (max_batch = the jobs), not until a short window ends: all of
    # them share one batch however slowly the threads arrive (the long window only bounds a hang)
    backend = BatchedBackend(tiny_llm_dir, "float32", max_batch=len(jobs), window_ms=120_000)
    for name, path in adapters.items():
        backend.add_adapter(name, path)
    got = run_concurrently(backend, jobs, dec)
    assert got == ref
    assert backend.stats["batches"] == 1 and backend.stats["max_rows"] == backend.stats["rows"] == len(jobs)


def test_per_row_decoding_settings_match_the_transformers_backend(tiny_llm_dir, adapters):
    decs = [Decoding(max_new_tokens=6, repetition_penalty=1.3, penalty_scope="generated"),
            Decoding(max_new_tokens=6, copy_text="harbour boats dawn", copy_bias=4.0),
            Decoding(max_new_tokens=3)]
    gen = Generator(tiny_llm_dir, "float32")
    gen.add_adapter("a", adapters["a"])
    backend = BatchedBackend(tiny_llm_dir, "float32", window_ms=200)
    backend.add_adapter("a", adapters["a"])
    msgs = [{"role": "user", "content": PROMPTS[1]}]
    ref = [gen.generate(msgs, d, adapter="a") for d in decs]
    got: list = [None] * len(decs)

    def one(k):
        got[k] = backend.generate(msgs, decs[k], adapter="a")
    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(decs))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert [g.text for g in got] == [r.text for r in ref]
    assert [g.new_tokens for g in got] == [r.new_tokens for r in ref]
    assert got[2].new_tokens <= 3


def test_streaming_and_sampling(tiny_llm_dir, adapters):
    backend = BatchedBackend(tiny_llm_dir, "float32")
    backend.add_adapter("a", adapters["a"])
    msgs = [{"role": "user", "content": PROMPTS[0]}]
    items = list(backend.stream(msgs, Decoding(max_new_tokens=6), adapter="a"))
    final = items[-1]
    assert "".join(items[:-1]).strip() == final.text or final.new_tokens >= 6
    sampled = [backend.generate(msgs, Decoding(max_new_tokens=6, temperature=1.0, seed=s), adapter="a").text
               for s in (7, 7, 8)]
    assert sampled[0] == sampled[1]


def test_close_answers_the_queue_then_stops_the_scheduler(tiny_llm_dir):
    import concurrent.futures
    import weakref

    backend = BatchedBackend(tiny_llm_dir, "float32", max_batch=2)
    msgs = [{"role": "user", "content": PROMPTS[0]}]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(backend.generate, msgs, Decoding(max_new_tokens=4)) for _ in range(4)]
        replies = [f.result() for f in futures]
    worker = backend._worker
    assert worker.is_alive() and all(r.new_tokens >= 1 for r in replies)
    backend.close()
    assert not worker.is_alive()
    again = backend.generate(msgs, Decoding(max_new_tokens=4))  # a later request starts a new scheduler
    assert again.text == replies[0].text
    backend.close()
    ref = weakref.ref(backend)
    del backend
    import gc

    gc.collect()
    assert ref() is None  # no thread keeps the model alive


def test_adapters_it_cannot_batch_fall_back_and_bad_ones_are_refused(tiny_llm_dir, tmp_path, caplog):
    dora = random_lora(tiny_llm_dir, tmp_path / "dora", seed=4, dora=True)
    assert "DoRA" in lora_support(dora)
    backend = BatchedBackend(tiny_llm_dir, "float32")
    with caplog.at_level(logging.WARNING, logger="eterna.batching"):
        backend.add_adapter("dora_npc", dora)
    assert "dora_npc" in caplog.text and backend.fallback_adapters() == ["dora_npc"]
    ref = Generator(tiny_llm_dir, "float32")
    ref.add_adapter("dora_npc", dora)
    msgs = [{"role": "user", "content": "Hi"}]
    dec = Decoding(max_new_tokens=5)
    assert backend.generate(msgs, dec, adapter="dora_npc").text == ref.generate(msgs, dec, adapter="dora_npc").text
    with pytest.raises(KeyError):
        backend.generate(msgs, dec, adapter="nobody")
    other = random_lora(tiny_llm_dir, tmp_path / "other", seed=5, fingerprint="0000000000000000")
    with pytest.raises(AdapterError, match="fingerprint"):
        backend.add_adapter("other", other)


def test_registered_as_a_backend_and_a_failing_row_fails_alone(tiny_llm_dir):
    backend = make_backend("batched", model_dir=tiny_llm_dir, dtype="float32", max_batch=4, batch_window_ms=300)
    assert backend.name == "batched" and backend.max_batch == 4
    too_long = [{"role": "user", "content": "word " * 5000}]  # beyond the tiny model's 4,096 positions
    with pytest.raises(ValueError, match="does not fit"):
        backend.generate(too_long, Decoding(max_new_tokens=2))
    msgs = [{"role": "user", "content": "Hi"}]
    results: dict = {}

    def one(name, dec):
        try:
            results[name] = backend.generate(msgs, dec)
        except Exception as e:
            results[name] = e
    jobs = [("bad", Decoding(max_new_tokens=4, repetition_penalty="oops")), ("good", Decoding(max_new_tokens=4))]
    threads = [threading.Thread(target=one, args=j) for j in jobs]
    backend.max_batch, backend.window = 2, 120.0  # the two rows share a batch however late the second arrives
    [t.start() for t in threads]
    [t.join() for t in threads]
    backend.max_batch, backend.window = 4, 0.3
    assert isinstance(results["bad"], Exception)
    assert results["good"].new_tokens >= 1  # the same batch's other row was answered
    assert backend.stats["max_rows"] == 2
    assert backend.generate(msgs, Decoding(max_new_tokens=2)).new_tokens >= 1  # and the scheduler goes on


def test_engine_on_the_batched_backend_answers_concurrent_players_as_alone(project):
    import yaml

    from app.dialogue import DialogueEngine

    lines = [("warden", "Good evening, warden, how are you?", "p1"),
             ("archivist", "Hello there, how is your day?", "p2"),
             ("director", "Describe the hall to me.", "p3"), ("warden", "Nice weather tonight.", "p4")]
    alone = DialogueEngine.from_config(project)
    ref = {s: alone.say(npc, line, session=s).text for npc, line, s in lines}
    raw = yaml.safe_load(project.read_text(encoding="utf-8"))
    raw["models"].update(backend="batched", batched={"batch_window_ms": 200})
    project.write_text(yaml.safe_dump(raw), encoding="utf-8")
    engine = DialogueEngine.from_config(project)
    assert engine.generator.name == "batched"
    got: dict = {}
    threads = [threading.Thread(target=lambda n=npc, t=line, s=s: got.__setitem__(s, engine.say(n, t, session=s).text))
               for npc, line, s in lines]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert got == ref
    assert engine.generator.stats["rows"] >= 1
