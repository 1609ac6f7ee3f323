"""The backend seam: the registry is the only list of names and loads nothing to list them; every backend speaks the
whole protocol; decoding is one implementation (`app/backends/decoding.py`)."""

import inspect
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest

from app.backends import BACKENDS, GenerationBackend, backend_names, make_backend, register_backend
from app.backends.decoding import Decoding, TokenPicker, apply_rules, sample, trim_to_sentence
from retrieval.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, expected", [
    ("Halt. Who goes there? Speak plainly and", "Halt. Who goes there?"),
    ("They talk. They smile. They all smile, and they", "They talk. They smile."),
    ('He said "Move along." Then he', 'He said "Move along."'),
    ("No sentence end at all here", "No sentence end at all here"),
    ("Short. And then a very long unfinished clause that goes on and on and on and on", "Short. And then a very "
     "long unfinished clause that goes on and on and on and on"),
    ("Version 1.5 is fine. Next", "Version 1.5 is fine."),
])
def test_trim_to_sentence(text, expected):
    assert trim_to_sentence(text) == expected


def test_listing_backend_names_imports_no_backend():
    """Config validation and the CLI's choices read the registry; that must load neither torch nor llama.cpp."""
    code = ("import sys; from app.config import EternaConfig; from app.backends import backend_choices; "
            "EternaConfig(); print(backend_choices()); "
            "print(sorted(m for m in ('torch', 'llama_cpp', 'transformers', 'app.backends.llamacpp', 'openai') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["['auto', 'batched', 'llamacpp', 'openai', 'transformers']", "[]"]


def test_every_registered_backend_implements_the_whole_protocol():
    members = [m for m in vars(GenerationBackend) if not m.startswith("_")]
    assert {"close", "copy_token_ids", "cache_report", "stream", "generate"} <= set(members)
    for name in backend_names():
        module, _, attr = BACKENDS[name].partition(":")
        factory = getattr(__import__(module, fromlist=[attr]), attr)
        cls = typing.get_type_hints(factory)["return"]
        missing = [m for m in members if m not in ("name", "fingerprint", "special_tokens", "adapters")
                   and not callable(getattr(cls, m, None))]
        assert not missing, f"{name}: {cls.__name__} lacks {missing}"
        assert getattr(cls, "name", None) == name


def test_a_new_backend_is_one_registration_and_an_unknown_name_is_a_config_error():
    class Echo:
        name = "echo"

    register_backend("echo-test", lambda **kw: Echo())
    try:
        assert "echo-test" in backend_names() and isinstance(make_backend("echo-test", model_dir=None), Echo)
        with pytest.raises(ValueError, match="registered twice"):
            register_backend("echo-test", "somewhere:else")
    finally:
        del BACKENDS["echo-test"]
    with pytest.raises(ConfigError, match="unknown backend 'vllm'; available: batched, llamacpp, openai, transformers"):
        make_backend("vllm")


def test_the_rules_penalise_bias_and_ban_in_place_in_order():
    logits = np.array([2.0, 2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    apply_rules(logits, Decoding(repetition_penalty=2.0, copy_text="x", copy_bias=1.5, no_repeat_ngram=2),
                seen=[2, 0, 0], reply=[4, 3, 4], copy_ids=np.array([0, 3]))
    # 0 and 2 penalised (2 / 2 + 1.5 bias; -1 * 2), 3 lifted, 3 banned: "4 3" was said, so after 4 comes no 3 again
    assert logits.tolist() == [2.5, 2.0, -2.0, -np.inf, 1.0]


def test_the_picker_is_greedy_or_seeded_top_p():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    greedy = TokenPicker(Decoding(), [1, 2], lambda text: [])
    assert greedy.pick(logits.copy()) == 0

    def draws(seed):
        rng = np.random.default_rng(seed)
        return [sample(logits.copy(), 1.0, 0.7, rng) for _ in range(200)]
    assert draws(3) == draws(3) and set(draws(3)) == {0, 1}  # top_p 0.7: only the two likeliest tokens
    sampled = [TokenPicker(Decoding(temperature=1.0, top_p=0.7, seed=5), [], lambda t: []) for _ in range(2)]
    assert sampled[0].pick(logits.copy()) == sampled[1].pick(logits.copy())
    picker = TokenPicker(Decoding(repetition_penalty=1.5, penalty_scope="generated", copy_text="ab", copy_bias=1.0),
                         [7, 8], lambda text: [1] if text == "ab" else [])
    assert picker.seen == [] and picker.copy_ids.tolist() == [1]
    picker.push(3)
    assert picker.seen == picker.reply == [3]


def test_one_decoding_module():
    """No backend carries its own copy of a rule or of sampling."""
    for path in (ROOT / "app" / "backends").glob("*.py"):
        if path.name == "decoding.py":
            continue
        src = path.read_text(encoding="utf-8")
        for needle in ("def _sample", "def sample", "repetition_penalty, vals", "def banned_ngram_tokens",
                       "def stream_token_text", "rng.choice", "multinomial"):
            assert needle not in src, f"{path.name} repeats {needle!r}"
    assert inspect.getsourcefile(TokenPicker).endswith("app/backends/decoding.py")
