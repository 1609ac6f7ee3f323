"""Router accuracy on a world's labelled utterances (`paths.eval/router.jsonl`), one JSON line per world.

The router is trained without that file: on utterances synthesised from the world's lore and cast, plus the world's
seeds if it ships any. Baseline in the same run: the majority class. Also reports gold-document retrieval in the
asking NPC's scope for the world's in-scope fact questions.

    .venv/bin/python benchmarks/bench_router.py [--config configs/kestrel.yaml ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import Cast, EternaConfig  # noqa: E402
from app.cues import Cues  # noqa: E402
from app.dialogue import build_router  # noqa: E402
from app.evaluation.facts import load_fact_items, router_report  # noqa: E402
from app.evaluation.measures import retrieval_report  # noqa: E402
from app.router import LABELS, load_router_items  # noqa: E402
from retrieval.embeddings import SentenceTransformerEmbedder  # noqa: E402
from retrieval.index import LoreIndex  # noqa: E402
from retrieval.rebuild import rebuild_index  # noqa: E402
from retrieval.retriever import MODES, RetrieverSpec, make_retriever  # noqa: E402
from retrieval.types import Scope  # noqa: E402


def world_router(config: Path, emb, tmp: Path):
    """A world's config, cast, index and router, built under `tmp` (index and router cache): (cfg, cast, index,
    router)."""
    cfg = EternaConfig.load(config)
    cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"cache_dir": tmp})})
    rebuild_index(cfg.paths.corpus, tmp / "index", emb)
    index = LoreIndex.open(tmp / "index", emb)
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    return cfg, cast, index, build_router(cfg, cast, emb, index, Cues.load(cfg.world.cues))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", nargs="+", default=[str(REPO / "configs" / "eterna.yaml")])
    ap.add_argument("--mode", choices=list(MODES), default="dense",
                    help="retrieval mode of the fact-retrieval figure (default dense, as docs/benchmarks.md reports)")
    args = ap.parse_args()
    emb = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
    for path in args.config:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, cast, index, router = world_router(Path(path), emb, Path(tmp))
            items = load_router_items(cfg.paths.eval / "router.jsonl")
            report = router_report(router, index, items, keep_errors=False)
            docs = {c.doc: c for c in index.chunks}
            facts = [it for it in load_fact_items(cfg.paths.eval / "facts.jsonl")
                     if Scope(npc=it["npc"], kinds=cast.get(it["npc"]).kinds(), chapter=it["chapter"]).allows(
                         docs[it["doc"]])]
            retrieval = retrieval_report(index, emb, facts, cast,
                                         retriever=make_retriever(RetrieverSpec(mode=args.mode)))
        labels = [it["label"] for it in items]
        print(json.dumps({"benchmark": "router", "world": cfg.world.name, "n": report["n"],
                          "accuracy": report["accuracy"],
                          "baseline_majority": round(max(labels.count(lbl) for lbl in LABELS) / len(labels), 4),
                          "trained_on": router.n_examples, "per_label": report["per_label"],
                          "fact_retrieval_in_npc_scope": retrieval}), flush=True)


if __name__ == "__main__":
    main()
