"""The `openai` backend (app/backends/openai.py): config errors at the edge, and the faults of a remote, against a loopback
HTTP server that misbehaves on purpose (only the network is played: the tokenizer and the engine are real). The
real engine (llama-cpp-python's own server) is in tests/slow/test_remote_engine.py."""

import json
import threading

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from app.config import EternaConfig, RemoteConfig
from app.backends.openai import RemoteBackend, RemoteBackendError, check_cast_adapters
from app.backends import Generation
from app.backends.decoding import Decoding
from retrieval.errors import ConfigError
from tests.app.test_server import Server

pytest.importorskip("openai")

MSGS = [{"role": "system", "content": "You are a smith."}, {"role": "user", "content": "Who made the bell?"}]


def _config(tmp_path, remote: dict) -> EternaConfig:
    path = tmp_path / "eterna.yaml"
    path.write_text(yaml.safe_dump({"models": {"backend": "openai", "remote": remote}}), encoding="utf-8")
    return EternaConfig.load(path)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.remote\.base_url"):
        _config(tmp_path, {"base_url": "not a url", "model": "m"})
    with pytest.raises(ConfigError, match=r"models\.remote\.timeout_s"):
        _config(tmp_path, {"base_url": "http://127.0.0.1:1/v1", "model": "m", "timeout_s": 0})
    with pytest.raises(ConfigError, match=r"adapters\.warden: lora_mode is lora_field"):
        _config(tmp_path, {"base_url": "http://127.0.0.1:1/v1", "model": "m", "lora_mode": "lora_field",
                           "adapters": {"warden": "warden-lora"}})
    cfg = _config(tmp_path, {"base_url": "http://127.0.0.1:1/v1", "model": "m", "adapters": {"ghost": "g"}})
    with pytest.raises(ConfigError, match=r"models\.remote\.adapters\.ghost: no such character"):
        check_cast_adapters(cfg.models.remote, ["warden", "archivist"])


def test_an_adapter_mapped_to_no_character_stops_the_engine_before_loading(project):
    from app.dialogue import DialogueEngine

    raw = yaml.safe_load(project.read_text(encoding="utf-8"))
    raw["models"].update(backend="openai", remote={"base_url": "http://127.0.0.1:9/v1", "model": "m",
                                                   "adapters": {"wardn": "warden"}})
    project.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"models\.remote\.adapters\.wardn.*warden"):
        DialogueEngine.from_config(project)


class Remote:
    """A loopback OpenAI-style server whose /v1/completions answers as `mode` says; counts the requests."""

    def __init__(self, mode: str):
        self.mode, self.hits, self.bodies = mode, 0, []
        self.release = threading.Event()
        app = FastAPI()

        @app.post("/v1/completions")
        async def completions(request: Request):
            self.hits += 1
            self.bodies.append(await request.json())
            if self.mode == "500":
                return JSONResponse({"error": {"message": "engine exploded"}}, status_code=500)
            if self.mode == "not-json":
                return PlainTextResponse("data: {this is not json\n\n", media_type="text/event-stream")
            if self.mode == "empty":
                return PlainTextResponse("data: [DONE]\n\n", media_type="text/event-stream")
            if self.mode == "slow":
                import asyncio

                await asyncio.sleep(5)
            pieces = ["For the record", ": the bell", " was cast in 1620."]

            def events():
                for i, p in enumerate(pieces):
                    finish = "stop" if i == len(pieces) - 1 else None
                    yield "data: " + json.dumps({"id": "c", "object": "text_completion", "created": 0, "model": "m",
                                                 "choices": [{"index": 0, "text": p, "finish_reason": finish}]})
                    yield "\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        self.server = Server(app)

    def __enter__(self):
        return self.server.__enter__() + "/v1"

    def __exit__(self, *exc):
        self.server.__exit__(*exc)


def _backend(url, tiny_llm_dir, **kw) -> RemoteBackend:
    remote = RemoteConfig(base_url=url, model="base", **{"retries": 2, "timeout_s": 10, **kw})
    return RemoteBackend(remote, tiny_llm_dir)


def test_stream_yields_pieces_then_the_generation(tiny_llm_dir):
    with Remote("ok") as url:
        backend = _backend(url, tiny_llm_dir)
        out = list(backend.stream(MSGS, Decoding(max_new_tokens=40)))
    assert out[:-1] == ["For the record", ": the bell", " was cast in 1620."]
    assert isinstance(out[-1], Generation) and out[-1].text == "For the record: the bell was cast in 1620."
    assert out[-1].prompt_tokens == backend.count_tokens(MSGS)


def test_request_body_carries_the_decoding_settings(tiny_llm_dir):
    remote = Remote("ok")
    with remote as url:
        backend = _backend(url, tiny_llm_dir)
        backend.generate(MSGS, Decoding(max_new_tokens=40, repetition_penalty=1.1, copy_text="bell 1620",
                                        copy_bias=2.0, seed=7))
        backend.generate(MSGS, Decoding(max_new_tokens=40))
    first, second = remote.bodies
    # the prompt is the chat template rendered by models.llm's tokenizer, token for token what the adapters saw
    assert first["prompt"] == backend.tokenizer.apply_chat_template(MSGS, add_generation_prompt=True,
                                                                     tokenize=False)
    assert first["max_tokens"] == 40 and first["temperature"] == 0.0 and first["seed"] == 7
    assert first["stream"] is True and first["stop"] == [backend.tokenizer.eos_token]
    assert first["repetition_penalty"] == first["repeat_penalty"] == 1.1
    ids = set(backend.copy_token_ids("bell 1620"))
    assert {int(k) for k in first["logit_bias"]} == ids and set(first["logit_bias"].values()) == {2.0}
    # a penalty of 1.0 is sent too: llama.cpp's servers otherwise apply their own default (1.1)
    assert second["repeat_penalty"] == 1.0 and "logit_bias" not in second


def test_adapters_are_addressed_as_the_server_expects(tiny_llm_dir, tmp_path):
    from tuning.base import model_fingerprint

    adapter = tmp_path / "warden"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8,
                                                             "target_modules": ["q_proj"]}))
    (adapter / "eterna_adapter.json").write_text(json.dumps({"base": {"fingerprint": model_fingerprint(
        tiny_llm_dir)}}))
    remote = Remote("ok")
    with remote as url:
        by_model = _backend(url, tiny_llm_dir, adapters={"warden": "warden-lora"})
        by_model.add_adapter("warden", adapter)
        by_model.generate(MSGS, Decoding(), adapter="warden")
        by_model.generate(MSGS, Decoding(), adapter=None)
        by_field = _backend(url, tiny_llm_dir, adapters={"warden": 3}, lora_mode="lora_field")
        by_field.add_adapter("warden", adapter)
        by_field.generate(MSGS, Decoding(), adapter="warden")
        by_field.generate(MSGS, Decoding(), adapter=None)
        unmapped = _backend(url, tiny_llm_dir)
        with pytest.raises(ConfigError, match="character 'archivist' has an adapter"):
            unmapped.add_adapter("archivist", adapter)
    models = [b["model"] for b in remote.bodies]
    assert models == ["warden-lora", "base", "base", "base"]
    assert remote.bodies[2]["lora"] == [{"id": 3, "scale": 1.0}] and remote.bodies[3]["lora"] == []


@pytest.mark.parametrize("mode,match", [("500", "answered 500 after 2 retries"),
                                        ("not-json", "broke off mid-reply"),
                                        ("empty", "ended its stream without finishing")])
def test_a_broken_remote_is_a_typed_error(tiny_llm_dir, mode, match):
    remote = Remote(mode)
    with remote as url:
        backend = _backend(url, tiny_llm_dir)
        with pytest.raises(RemoteBackendError, match=match) as e:
            backend.generate(MSGS, Decoding())
    assert e.value.retry_after == 2
    assert remote.hits == (3 if mode == "500" else 1)  # 5xx retried within the budget; a bad stream is not


def test_timeouts_and_refused_connections_are_retried_then_typed(tiny_llm_dir):
    remote = Remote("slow")
    with remote as url:
        backend = _backend(url, tiny_llm_dir, timeout_s=0.3, retries=1)
        with pytest.raises(RemoteBackendError, match="failed after 1 retries"):
            backend.generate(MSGS, Decoding())
    assert remote.hits == 2
    from tests.app.test_server import _free_port

    refused = _backend(f"http://127.0.0.1:{_free_port()}/v1", tiny_llm_dir, retries=1)
    with pytest.raises(RemoteBackendError, match="failed after 1 retries"):
        refused.generate(MSGS, Decoding())


def test_what_the_server_cannot_do_is_named_once_at_start(tmp_path, tiny_llm_dir, caplog, monkeypatch):
    import logging

    import app.backends.openai as remote_mod
    from app.backends import make_backend

    monkeypatch.setattr(remote_mod, "_WARNED", set())
    with Remote("ok") as url:
        cfg = _config(tmp_path, {"base_url": url, "model": "base"})  # defaults: n-gram ban 3, reply-only penalty
        cfg = cfg.model_copy(update={"grounding": cfg.grounding.model_copy(update={"repetition_penalty": 1.2})})
        with caplog.at_level(logging.WARNING, logger="eterna.remote"):
            backend = make_backend("openai", model_dir=tiny_llm_dir, config=cfg)
            backend.generate(MSGS, Decoding(no_repeat_ngram=3))
            backend.generate(MSGS, Decoding(repetition_penalty=1.2, penalty_scope="generated"))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and sum("generation.no_repeat_ngram" in m for m in said) == 1
    assert sum("grounding.penalty_over: generated" in m for m in said) == 1
    with pytest.raises(ConfigError, match="models.remote is not set"):
        make_backend("openai", model_dir=tiny_llm_dir, config=EternaConfig())
    cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"remote": cfg.models.remote.model_copy(
        update={"api_key_env": "ETERNA_TEST_UNSET_KEY"})})})
    monkeypatch.delenv("ETERNA_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match="ETERNA_TEST_UNSET_KEY is not set"):
        make_backend("openai", model_dir=tiny_llm_dir, config=cfg)
