"""`eterna models`: the base and embedding models."""

from __future__ import annotations

import time

from app.cli.common import add_flags, emit, load_config


def register(sub) -> None:
    models = sub.add_parser("models", help="manage the base and embedding models").add_subparsers(
        dest="sub", required=True)
    sp = models.add_parser("prepare", help="convert the builtin GGUF once and check the embedder")
    add_flags(sp)
    sp.set_defaults(fn=cmd_models_prepare)


def cmd_models_prepare(args) -> None:
    from retrieval.embeddings import SentenceTransformerEmbedder
    from tuning.base import prepare_model

    cfg = load_config(args)
    t0 = time.perf_counter()
    llm = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    t1 = time.perf_counter()
    emb = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype)
    out = {"llm": str(llm), "llm_seconds": round(t1 - t0, 2), "embedder": emb.id, "embedder_dim": emb.dim,
           "embedder_seconds": round(time.perf_counter() - t1, 2)}
    emit(args, out, f"llm ready at {llm} ({out['llm_seconds']} s); embedder {emb.id} dim {emb.dim}")
