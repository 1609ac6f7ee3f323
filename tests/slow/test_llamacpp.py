"""The llama.cpp backend on the shipped Q4_1 GGUF: PEFT LoRA -> GGUF LoRA conversion, per-turn adapter switching,
the transformers fallback for adapters llama.cpp cannot run, and the engine's default backend."""

import json
import logging

import numpy as np
import pytest

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.slow

SPEC = "builtin:smollm2-135m-instruct"
MSGS = [{"role": "system", "content": "You are Brom, the gruff smith of Ashford."},
        {"role": "user", "content": "Who made the great bell?"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tuning.base import prepare_model

    return prepare_model(SPEC, tmp_path_factory.mktemp("models"))


def _random_adapter(model_dir, out, *, dora=False, modules=("q_proj", "k_proj", "v_proj", "o_proj", "up_proj")):
    import torch
    from peft import LoraConfig, get_peft_model

    from tuning.base import load_base, model_fingerprint

    model, _ = load_base(model_dir, "float32")
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=list(modules), use_dora=dora,
                                            task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(0)
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=g) * 0.3
    peft.save_pretrained(out)
    (out / "eterna_adapter.json").write_text(json.dumps({"base": {"fingerprint": model_fingerprint(model_dir)}}))
    return peft


def _hf_logits(peft, tok, adapter: bool):
    import torch

    enc = tok.apply_chat_template(MSGS, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        if adapter:
            return peft(**enc).logits[0, -1].numpy()
        with peft.disable_adapter():
            return peft(**enc).logits[0, -1].numpy()


def _lc_logits(backend, adapter):
    from app.backends.decoding import prompt_ids

    ids = prompt_ids(backend.tokenizer, MSGS)
    with backend._lock:
        backend._select(adapter)
        backend._eval_prompt(ids)
        return backend._logits()


def test_gguf_lora_matches_peft(model_dir, tmp_path):
    from transformers import AutoTokenizer

    from app.backends.decoding import Decoding
    from app.backends.llamacpp import LlamaCppBackend
    from tuning.base import model_gguf

    peft = _random_adapter(model_dir, tmp_path / "brom")
    tok = AutoTokenizer.from_pretrained(model_dir)
    hf_base, hf_lora = _hf_logits(peft, tok, False), _hf_logits(peft, tok, True)
    backend = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "cache")
    backend.add_adapter("brom", tmp_path / "brom")
    backend.add_adapter("brom", tmp_path / "brom")  # idempotent
    assert len(list((tmp_path / "cache" / "gguf-lora").glob("*.gguf"))) == 1  # converted once, cached
    lc_base, lc_lora, lc_base2 = _lc_logits(backend, None), _lc_logits(backend, "brom"), _lc_logits(backend, None)
    # the same model: Q4_1 in llama.cpp vs its de-quantised weights in transformers
    assert np.corrcoef(hf_base, lc_base)[0, 1] > 0.99
    # the adapter's effect on the logits is the same in both runtimes (a wrong q/k permutation gives ~0.5)
    assert np.corrcoef(hf_lora - hf_base, lc_lora - lc_base)[0, 1] > 0.95
    np.testing.assert_allclose(lc_base2, lc_base, atol=1e-3)  # switching back restores the base exactly
    g = backend.generate(MSGS, Decoding(max_new_tokens=12), adapter="brom")
    assert g.new_tokens >= 1 and g.text


def test_adapters_llamacpp_cannot_run_fall_back_to_transformers(model_dir, tmp_path, caplog):
    from app.backends.llamacpp import LlamaCppBackend
    from app.backends.decoding import Decoding
    from tuning.base import model_gguf

    _random_adapter(model_dir, tmp_path / "dora_npc", dora=True, modules=("q_proj", "v_proj"))
    backend = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="eterna.llamacpp"):
        backend.add_adapter("dora_npc", tmp_path / "dora_npc")
    assert "dora_npc" in caplog.text and "DoRA" in caplog.text
    assert backend.fallback_adapters() == ["dora_npc"]
    out = backend.generate(MSGS, Decoding(max_new_tokens=8), adapter="dora_npc")
    assert out.new_tokens >= 1


def test_engine_uses_llamacpp_by_default_and_grounded_decoding_runs(model_dir, tmp_path, embedder):
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from retrieval.rebuild import rebuild_index
    from tests.conftest import REPO

    shipped = EternaConfig.load(REPO / "configs" / "kestrel.yaml")
    cfg = shipped.model_copy(update={
        "paths": shipped.paths.model_copy(update={"index": tmp_path / "index", "sessions": None}),
        "models": shipped.models.model_copy(update={"cache_dir": model_dir.parent}),
        "grounding": shipped.grounding.model_copy(update={"answer": "generate"})})
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    engine = DialogueEngine.from_settings(cfg)
    assert engine.generator.name == "llamacpp"
    npc = engine.cast.npcs[0].id
    reply = engine.say(npc, "Good morning! How are you today?", session="a")
    assert reply.tokens["reply"] >= 1 and reply.context["prompt_tokens"] > 0
    items = list(engine.stream(npc, "Good morning! How are you today?", session="b"))
    assert items[-1].text == reply.text and "".join(items[:-1]).strip() == reply.text.strip()


def test_saved_system_prompt_state_gives_the_same_reply(model_dir, tmp_path):
    from app.backends.llamacpp import LlamaCppBackend
    from app.backends.decoding import Decoding
    from tuning.base import model_gguf

    a = [{"role": "system", "content": "You are Brom, the gruff smith of Ashford."},
         {"role": "user", "content": "What do you sell?"}]
    b = [{"role": "system", "content": "You are Mira, the cheerful baker of Ashford."},
         {"role": "user", "content": "What do you sell?"}]
    a2 = [a[0], {"role": "user", "content": "Tell me about your day."}]
    d = Decoding(max_new_tokens=16)
    cached = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", state_cache_mb=0)  # the head cache alone
    first = [cached.generate(m, d).text for m in (a, b, a2)]  # a2 restores Brom's saved system turn
    assert cached.cache_stats == {"prefix_hits": 1, "prefix_saves": 2, "state_hits": 0, "state_saves": 0}
    cold = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", prefix_cache=0, state_cache_mb=0)
    assert [cold.generate(m, d).text for m in (a2, b, a)] == [first[2], first[1], first[0]]


def test_cache_prefix_keeps_hitting_when_the_rest_of_the_system_turn_changes(model_dir, tmp_path):
    """A long session's system turn changes every turn (its facts and rolling summary): the state kept is the
    head's, so every later turn of the same head restores it, with the same replies as no cache at all."""
    from app.backends.llamacpp import LlamaCppBackend, _pages
    from app.backends.decoding import Decoding
    from tuning.base import model_gguf

    head = "You are Brom, the gruff smith of Ashford. Answer in a sentence."
    turns = [[{"role": "system", "content": f"{head}\n\nThe player said earlier: {said}"},
              {"role": "user", "content": "What do you sell?"}]
             for said in ("Hello.", "Hello. | I need a blade.", "I need a blade. | Is it sharp?")]
    d = Decoding(max_new_tokens=12, cache_prefix=head)
    other = [{"role": "system", "content": "You are Mira, the baker."}, {"role": "user", "content": "Hi."}]
    cached = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", state_cache_mb=0)  # the head cache alone
    replies = []
    for m in turns:
        replies.append(cached.generate(m, d).text)
        cached.generate(other, Decoding(max_new_tokens=4))  # another character in between: the context moves on
    assert cached.cache_stats["prefix_saves"] == 2 and cached.cache_stats["prefix_hits"] == 4
    assert len(cached._prefixes) == 2
    cold = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", prefix_cache=0, state_cache_mb=0)
    assert [cold.generate(m, d).text for m in turns] == replies
    # without the hint every turn is a new key: the old behaviour, a save per turn and no hit
    blind = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", state_cache_mb=0)
    for m in turns:
        blind.generate(m, Decoding(max_new_tokens=12))
    assert (blind.cache_stats["prefix_hits"], blind.cache_stats["prefix_saves"]) == (0, 3)
    buf = _pages(1000)  # states live in their own page mappings
    assert len(buf) == 1000 and bytes(buf[:4]) == b"\0\0\0\0"


def test_conversation_states_spare_the_history_and_give_the_same_replies(model_dir, tmp_path):
    """Two conversations take turns: each turn's prompt is the last one plus the reply and a new line. The state
    kept after a reply is restored on that conversation's next turn, although the other one ran in between, so only
    the new lines are evaluated; the replies equal those of a backend with no cache at all. The kept states stay
    within their byte budget."""
    from app.backends.llamacpp import LlamaCppBackend
    from app.backends.decoding import Decoding
    from tuning.base import model_gguf

    lines = ["What do you sell?", "Is the iron good?", "How much for a knife?", "Thank you, goodbye."]
    d = Decoding(max_new_tokens=10)

    def talk(backend):
        chats = {n: [{"role": "system", "content": f"You are {n}, a trader of Ashford. Answer in a sentence."}]
                 for n in ("Brom", "Mira")}
        replies = []
        for line in lines:
            for chat in chats.values():
                chat.append({"role": "user", "content": line})
                text = backend.generate(chat, d).text
                chat.append({"role": "assistant", "content": text})
                replies.append(text)
        return replies

    warm = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", prefix_cache=0)
    got = talk(warm)
    assert warm.cache_stats["state_hits"] == 6, warm.cache_stats  # every turn after each one's first
    assert len(warm._states) == 2  # a conversation's newer state replaces its older one
    report = warm.cache_report()
    assert report["conversation_states"] == 2 and 0 < report["conversation_mb"] <= report["conversation_budget_mb"]
    cold = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", prefix_cache=0, state_cache_mb=0)
    assert talk(cold) == got and cold.cache_stats["state_hits"] == 0
    small = LlamaCppBackend(model_gguf(SPEC), model_dir, tmp_path / "c", prefix_cache=0, state_cache_mb=3)
    assert talk(small) == got
    assert 0 < sum(size for _, size in small._states.values()) <= 3 * 2**20


CHILD = """
import json, sys
from pathlib import Path
from app.config import EternaConfig
from app.dialogue import DialogueEngine
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.rebuild import rebuild_index

repo, tmp, cache = map(Path, sys.argv[1:4])
shipped = EternaConfig.load(repo / "configs" / "kestrel.yaml")
cfg = shipped.model_copy(update={
    "paths": shipped.paths.model_copy(update={"index": tmp / "index", "sessions": None}),
    "models": shipped.models.model_copy(update={"cache_dir": cache})})
rebuild_index(cfg.paths.corpus, cfg.paths.index, SentenceTransformerEmbedder(cfg.models.embedder))
engine = DialogueEngine.from_settings(cfg)
reply = engine.say(engine.cast.npcs[0].id, "Good morning! How are you today?", session="a")
print(json.dumps({"backend": engine.generator.name, "choice": engine.generator.choice, "text": reply.text,
                  "tokens": reply.tokens}))
"""


def test_default_backend_in_a_fresh_process_is_llamacpp_where_the_probe_passes(model_dir, tmp_path):
    """A new process, the shipped config (backend auto): the probe runs in a child, and where it passes the engine
    serves on llama.cpp, never a silent fallback to transformers."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(tmp_path), str(model_dir.parent)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"})
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    probe = r["choice"]["probe"]
    assert probe["attempts"], "the engine took llama.cpp without probing it"
    if probe["backend"] == "llamacpp":
        assert r["backend"] == "llamacpp" and r["choice"]["backend"] == "llamacpp"
        assert r["tokens"]["reply"] >= 1 and r["text"].strip()
    else:  # a machine where no configuration runs: the fallback, said with its reason
        assert r["backend"] == "transformers" and "Fix:" in r["choice"]["reason"]
