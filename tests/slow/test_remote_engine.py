"""The `openai` backend against a real engine on loopback: llama-cpp-python's own OpenAI-compatible server
(`python -m llama_cpp.server`, one process per alias), on the shipped Q4_1 GGUF and the shipped archivist adapter.

- With Eterna-only decoding off, its greedy replies are the in-process llama.cpp backend's, word for word.
- Streaming; a server killed mid-reply (a typed error) or down for a turn (503 with Retry-After, no session line),
  the next turn fine once it is back; a server that comes back while the client retries.
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("llama_cpp")
pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python's server extras (make setup installs them)")
pytestmark = pytest.mark.slow

SPEC = "builtin:smollm2-135m-instruct"
REPO = Path(__file__).resolve().parents[2]
ADAPTER = REPO / "corpora" / "library" / "adapters" / "archivist"
PROMPTS = [
    [{"role": "system", "content": "You are Brom, the gruff smith of Ashford."},
     {"role": "user", "content": "Who made the great bell?"}],
    [{"role": "system", "content": "You are a librarian. Answer in one sentence."},
     {"role": "user", "content": "How many books can I borrow?"},
     {"role": "assistant", "content": "Three at a time."}, {"role": "user", "content": "And for how long?"}],
    [{"role": "user", "content": "Tell me about the sea."}],
]
GREEDY = dict(max_new_tokens=40, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram=0)


def _free_port() -> int:
    from tests.app.test_server import _free_port as free

    return free()


class LlamaServer:
    """`python -m llama_cpp.server` on a loopback port, as a child process (start, kill, start again)."""

    def __init__(self, gguf: Path, alias: str, lora: Path | None = None, port: int | None = None):
        self.port = port or _free_port()
        self.args = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
                     "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "2",
                     "--verbose", "False",
                     "--interrupt_requests", "False"]
        if lora is not None:
            self.args += ["--lora_path", str(lora)]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc = None

    def start(self) -> "LlamaServer":
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while True:
            assert self.proc.poll() is None, f"llama_cpp.server died: {self.proc.stderr.read().decode()[-2000:]}"
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "llama_cpp.server did not start in 120 s"
            time.sleep(0.3)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def cache(shared_models):
    return shared_models  # (the default model converted once per run)


@pytest.fixture(scope="module")
def model_dir(cache):
    from tuning.base import prepare_model

    return prepare_model(SPEC, cache)


@pytest.fixture(scope="module")
def gguf():
    from tuning.base import model_gguf

    return model_gguf(SPEC)


@pytest.fixture(scope="module")
def local(gguf, model_dir, cache):
    from app.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(gguf, model_dir, cache, state_cache_mb=0)
    backend.add_adapter("archivist", ADAPTER)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def base_server(gguf):
    server = LlamaServer(gguf, "smollm2").start()
    yield server
    server.kill()


def _remote(url, model_dir, **kw):
    from app.config import RemoteConfig
    from app.backends.openai import RemoteBackend

    return RemoteBackend(RemoteConfig(base_url=url, model="smollm2", **{"retries": 1, "timeout_s": 60, **kw}),
                         model_dir)


def test_greedy_replies_equal_the_in_process_backend(local, base_server, model_dir):
    from app.backends import Generation
    from app.backends.decoding import Decoding

    remote = _remote(base_server.url, model_dir)
    for msgs in PROMPTS:
        want = local.generate(msgs, Decoding(**GREEDY)).text
        streamed = list(remote.stream(msgs, Decoding(**GREEDY)))
        got = streamed[-1]
        assert isinstance(got, Generation) and got.text == want and want
        assert "".join(streamed[:-1]).strip().startswith(got.text[:20])  # the pieces are the reply, as it came
    # chat mode: the server applies the GGUF's own chat template; the same model answers (not asserted equal)
    chat = _remote(base_server.url, model_dir, api="chat").generate(PROMPTS[0], Decoding(**GREEDY))
    assert chat.text and chat.new_tokens > 0


def test_an_adapter_served_under_its_alias_equals_the_in_process_adapter(local, gguf, model_dir, cache):
    from app.backends.decoding import Decoding
    from tuning.export import cached_gguf_lora

    lora = cached_gguf_lora(ADAPTER, model_dir, cache / "gguf-lora")
    server = LlamaServer(gguf, "archivist", lora=lora).start()  # llama_cpp.server: one process per alias
    try:
        remote = _remote(server.url, model_dir, adapters={"archivist": "archivist"})
        remote.add_adapter("archivist", ADAPTER)
        for msgs in PROMPTS[:2]:
            want = local.generate(msgs, Decoding(**GREEDY), adapter="archivist").text
            assert remote.generate(msgs, Decoding(**GREEDY), adapter="archivist").text == want
        base = local.generate(PROMPTS[0], Decoding(**GREEDY)).text
        assert remote.generate(PROMPTS[0], Decoding(**GREEDY), adapter="archivist").text != base
    finally:
        server.kill()


def test_a_remote_killed_mid_reply_is_a_typed_error(gguf, model_dir):
    from app.backends.openai import RemoteBackendError
    from app.backends.decoding import Decoding

    server = LlamaServer(gguf, "smollm2").start()
    try:
        remote = _remote(server.url, model_dir)
        pieces = remote.stream([{"role": "user", "content": "Count from 1 to 200, separated by commas."}],
                               Decoding(max_new_tokens=600, repetition_penalty=1.0, no_repeat_ngram=0))
        assert next(pieces)  # the reply has started
        server.kill()
        with pytest.raises(RemoteBackendError, match="broke off mid-reply|ended its stream"):
            list(pieces)
    finally:
        server.kill()


def test_a_remote_that_comes_back_while_retrying_serves_the_turn(gguf, model_dir):
    from app.backends.decoding import Decoding

    server = LlamaServer(gguf, "smollm2")
    remote = _remote(server.url, model_dir, retries=10)  # backoff 0.5, 1, 2, 4, then 8 s: about a minute in all
    restart = threading.Timer(0.5, server.start)
    restart.start()
    try:
        assert remote.generate(PROMPTS[0], Decoding(**GREEDY)).text  # refused at first, then served
    finally:
        restart.join()
        server.kill()


def _session_lines(folder: Path) -> int:
    return sum(len(f.read_text(encoding="utf-8").splitlines()) for f in folder.rglob("*") if f.is_file())


def test_eterna_serve_answers_503_while_the_remote_is_down_and_writes_nothing(tmp_path, gguf, cache, model_dir,
                                                                              embedder):
    import yaml

    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from app.server import create_app
    from retrieval.rebuild import rebuild_index
    from tests.app.test_server import Server
    from tests.conftest import write_project

    server = LlamaServer(gguf, "smollm2").start()
    try:
        path = write_project(tmp_path / "proj", SPEC, sessions=True)
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw["models"].update(cache_dir=str(cache), backend="openai",
                             remote={"base_url": server.url, "model": "smollm2", "retries": 1, "timeout_s": 30})
        raw["generation"].update(no_repeat_ngram=0, repetition_penalty=1.0)
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        cfg = EternaConfig.load(path)
        rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
        engine = DialogueEngine.from_settings(cfg)
        assert engine.generator.name == "openai"
        sessions = cfg.paths.sessions
        with Server(create_app(engine)) as url:
            say = lambda: httpx.post(f"{url}/v1/npcs/warden/say", timeout=120,  # noqa: E731
                                     json={"text": "Hello there!", "session": "p1"})
            first = say()
            assert first.status_code == 200 and first.json()["tokens"]["reply"] > 0
            assert _session_lines(sessions) == 1
            server.kill()
            down = say()
            assert down.status_code == 503 and down.headers["retry-after"] == "2"
            assert "generation server" in down.json()["detail"]
            chat = httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
                "model": "warden", "user": "p1", "stream": True,
                "messages": [{"role": "user", "content": "Thank you, friend."}]})
            assert chat.status_code == 503 and chat.json()["error"]["type"] == "service_unavailable"
            assert _session_lines(sessions) == 1  # the turns that did not happen left nothing
            server.start()
            again = say()
            assert again.status_code == 200 and _session_lines(sessions) == 2
            assert json.loads(httpx.get(f"{url}/healthz").text)["backend"] == "openai"
    finally:
        server.kill()


def test_gguf_export_writes_the_lora_the_servers_load(tmp_path, model_dir, capsys):
    from app.cli import main

    rc = main(["--config", str(REPO / "configs" / "eterna.yaml"), "adapters", "export", "--npc", "archivist",
               "--format", "gguf", "--out", str(tmp_path), "--base", str(model_dir), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["path"] == str(tmp_path / "archivist.gguf")
    assert (tmp_path / "archivist.gguf").read_bytes()[:4] == b"GGUF"
    assert any(f"--lora {tmp_path / 'archivist.gguf'}" in c for c in out["commands"])
    assert any("--lora_path" in c and "--model_alias archivist" in c for c in out["commands"])
