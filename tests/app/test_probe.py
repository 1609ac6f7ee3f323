"""The startup probe: real child processes that die by a signal, hang, or pass; the choice, its reason, its cache."""

import json
import time

import pytest

from app import probe as probe_mod
from app.probe import CANDIDATES, check_gguf, probe, ProbeError

ENTRIES = "tests.app.probe_entries"


@pytest.fixture(autouse=True)
def fresh_process_memo():
    probe_mod._DONE.clear()  # each test decides as a new process would
    yield
    probe_mod._DONE.clear()


@pytest.fixture
def gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    return path


def runs(gguf) -> int:
    f = gguf.with_suffix(".runs")
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_a_configuration_that_dies_by_sigill_falls_to_the_next(gguf, tmp_path, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="eterna.probe")  # CLI tests in this process quiet the root logger
    r = probe(gguf, cache_dir=tmp_path / "cache", entry=f"{ENTRIES}:sigill_with_extra_bufts")
    assert r.backend == "llamacpp" and r.config == {"extra_bufts": False}
    first, second = r.attempts
    assert first.signal == "SIGILL" and first.returncode < 0 and not first.ok
    assert second.ok and second.signal is None
    assert "SIGILL" in r.reason and "illegal instruction" in r.reason and "make setup" in r.reason
    assert any("SIGILL" in m for m in caplog.messages)  # said once, with the signal and the fix


def test_when_every_configuration_dies_the_engine_uses_transformers(gguf, tmp_path):
    r = probe(gguf, cache_dir=tmp_path / "cache", entry=f"{ENTRIES}:always_sigill")
    assert r.backend == "transformers" and r.config is None and not r.ok
    assert [a.signal for a in r.attempts] == ["SIGILL", "SIGILL"]
    assert "transformers" in r.reason and "make setup" in r.reason


def test_a_hanging_child_is_killed_at_the_time_limit_and_not_cached(gguf, tmp_path):
    t0 = time.perf_counter()
    r = probe(gguf, cache_dir=tmp_path / "cache", entry=f"{ENTRIES}:hangs", timeout_s=1.5)
    assert time.perf_counter() - t0 < 30
    assert r.backend == "transformers"
    assert all(a.error.startswith("timed out after 1.5 s") for a in r.attempts)
    assert not list((tmp_path / "cache" / "probe").glob("*.json"))  # a busy machine must not stick as a verdict


def test_the_result_is_cached_per_build_cpu_kernel_and_model(gguf, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    entry = f"{ENTRIES}:sigill_with_extra_bufts"
    r1 = probe(gguf, cache_dir=cache, entry=entry)
    assert not r1.cached and runs(gguf) == 2
    files = list((cache / "probe").glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["config"] == {"extra_bufts": False}
    probe_mod._DONE.clear()  # a later start
    r2 = probe(gguf, cache_dir=cache, entry=entry)
    assert r2.cached and r2.config == r1.config and runs(gguf) == 2  # no child ran

    real_cpu = probe_mod.cpu_info

    def other_cpu():
        info = real_cpu()
        return {**info, "flags_sha256": "another-cpu"}

    monkeypatch.setattr(probe_mod, "cpu_info", other_cpu)  # the same disk on another CPU
    probe_mod._DONE.clear()
    assert not probe(gguf, cache_dir=cache, entry=entry).cached and runs(gguf) == 4
    monkeypatch.setattr(probe_mod, "cpu_info", lambda: {**real_cpu(), "kernel": "9.9.9-other"})
    probe_mod._DONE.clear()
    assert not probe(gguf, cache_dir=cache, entry=entry).cached and runs(gguf) == 6
    monkeypatch.setattr(probe_mod, "cpu_info", real_cpu)
    real_lib = probe_mod.llama_build
    monkeypatch.setattr(probe_mod, "llama_build", lambda: {**real_lib(), "libraries_sha256": "rebuilt"})
    probe_mod._DONE.clear()
    assert not probe(gguf, cache_dir=cache, entry=entry).cached and runs(gguf) == 8
    monkeypatch.setattr(probe_mod, "llama_build", real_lib)
    probe_mod._DONE.clear()
    assert probe(gguf, cache_dir=cache, entry=entry).cached and runs(gguf) == 8  # back on the first machine
    gguf.write_bytes(gguf.read_bytes() + b"\x00")  # another model file
    probe_mod._DONE.clear()
    assert not probe(gguf, cache_dir=cache, entry=entry).cached and runs(gguf) == 10


def test_key_names_what_it_is_keyed_on(gguf):
    key = probe_mod.probe_key(gguf)
    assert {"llama_cpp", "libraries", "cpu_flags", "kernel", "model"} <= set(key)


@pytest.mark.parametrize("content, words", [(b"", "not a GGUF"), (b"GG", "not a GGUF"),
                                            (b"PK\x03\x04 zip", "not a GGUF"), (b"GGUF\x03", "truncated")])
def test_not_a_gguf_is_refused_naming_the_file(tmp_path, content, words):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ProbeError, match=words) as e:
        check_gguf(bad)
    assert str(bad) in str(e.value)
    r = probe(bad, cache_dir=tmp_path / "cache", entry=f"{ENTRIES}:passes")
    assert r.backend == "transformers" and str(bad) in r.reason and runs(bad) == 0


def test_a_truncated_gguf_fails_in_the_real_child_naming_the_file(tmp_path):
    pytest.importorskip("llama_cpp")
    from tuning.base import BUILTIN_LLMS, model_gguf

    real = model_gguf(next(iter(BUILTIN_LLMS)))
    cut = tmp_path / "cut.gguf"
    with real.open("rb") as f:
        cut.write_bytes(f.read(200_000))  # a valid header, then nothing
    r = probe(cut, cache_dir=tmp_path / "cache", timeout_s=60)
    assert r.backend == "transformers"
    assert all(a.returncode == 3 and "cut.gguf" in a.error for a in r.attempts), r.attempts


def test_candidates_try_extra_buffer_types_first():
    assert CANDIDATES[0] == {"extra_bufts": True} and CANDIDATES[-1] == {"extra_bufts": False}


def test_server_starts_on_the_fallback_and_healthz_says_why(project, tmp_path):
    """A truncated models.llamacpp.gguf: the engine still starts, on transformers, and /healthz names the file."""
    import yaml
    from fastapi.testclient import TestClient

    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from app.server import create_app

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a model at all")
    raw = yaml.safe_load(project.read_text())
    raw["models"]["llamacpp"] = {"gguf": str(bad)}
    raw["models"]["backend"] = "llamacpp"
    project.write_text(yaml.safe_dump(raw))
    engine = DialogueEngine.from_settings(EternaConfig.load(project))
    health = TestClient(create_app(engine)).get("/healthz").json()
    assert health["backend"] == "transformers" and health["backend_configured"] == "llamacpp"
    assert "broken.gguf" in health["backend_reason"] and "not a GGUF" in health["backend_reason"]
    reply = engine.say("warden", "Hello there", session="s")
    assert reply.text is not None


def test_doctor_json_has_every_field(project, capsys):
    from app.cli import main

    assert main(["--config", str(project), "doctor", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) >= {"backend", "cpu", "llama_cpp", "probe", "torch", "models", "index", "adapters", "python"}
    assert r["backend"]["chosen"] == "transformers" and r["backend"]["reason"]
    assert set(r["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_int8"}
    assert r["cpu"]["kernel"] and r["cpu"]["model"]
    assert r["torch"]["threads"] >= 1 and "version" in r["torch"]
    assert r["models"]["llm"]["fingerprint"] and r["models"]["embedder"]["fingerprint"]
    assert r["index"]["generation"] and r["index"]["chunks"] > 0
    assert isinstance(r["adapters"], list)
    if r["llama_cpp"]["installed"]:
        assert r["llama_cpp"]["version"] and r["llama_cpp"]["libraries_sha256"]

