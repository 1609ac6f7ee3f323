"""Hybrid retrieval vs dense and BM25, measured in one run. One JSON line per data set.

    .venv/bin/python benchmarks/bench_hybrid.py [--beir ../shared/data/scifact] [--worlds configs/eterna.yaml ...]

- SciFact (BEIR): the fusion weight is chosen on the *train* split (a grid over 0..1), then dense (one vector per
  document, MiniLM), BM25 (bm25s, stemmed), reciprocal-rank fusion (k=60, the naive baseline) and the tuned hybrid
  are scored on the *test* split (nDCG@10).
- The game worlds: the gold document of each fact question, searched in the asking NPC's scope and chapter; hit@1,
  hit@4 and MRR for dense and for hybrid with the weight chosen on SciFact (no tuning on the worlds).

Writes only under a temporary folder (the BEIR index cache) unless --cache is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.evaluation.retrieval_eval import evaluate_beir, metrics, read_beir  # noqa: E402


def rrf(dense_ranked: dict, lex_ranked: dict, k: int = 60, depth: int = 100) -> dict:
    out = {}
    for q in dense_ranked:
        score: dict[str, float] = {}
        for lst in (dense_ranked[q], lex_ranked.get(q, [])):
            for r, d in enumerate(lst[:depth]):
                score[d] = score.get(d, 0.0) + 1.0 / (k + r + 1)
        out[q] = sorted(score, key=lambda d: -score[d])
    return out


def beir(folder: Path, embedder, cache: Path, weight: float | None = None) -> tuple[dict, float]:
    """Scores on the test split; the fusion weight is chosen on the train split unless given."""
    from retrieval.lexical import LexicalIndex

    train = {}
    if weight is None:
        grid = [round(w, 1) for w in np.arange(0.0, 1.01, 0.1)]
        train = {w: evaluate_beir(folder, embedder, "minilm", cache, split="train", mode="hybrid",
                                  weight=w)["ndcg@10"] for w in grid}
    best = max(train, key=train.get) if weight is None else weight
    res = {m: evaluate_beir(folder, embedder, "minilm", cache, split="test", mode=m, weight=best)
           for m in ("dense", "bm25", "hybrid")}
    corpus, queries, qrels = read_beir(folder, "test")
    ids = [d["_id"] for d in corpus]
    cache_dir = Path(res["dense"]["cache"])
    vectors = np.load(cache_dir / "vectors.npy")
    lexical = LexicalIndex.load(cache_dir / "bm25")
    qv = embedder.encode([queries[q] for q in qrels])
    dense_r, lex_r = {}, {}
    for n, q in enumerate(qrels):
        s = vectors @ qv[n]
        dense_r[q] = [ids[i] for i in np.argsort(-s)[:100]]
        lex_r[q] = [ids[i] for i, _ in lexical.search(queries[q], 100)]
    nd = {m: res[m]["ndcg@10"] for m in res}
    out = {"data": folder.name, "queries": res["dense"]["queries"], "docs": res["dense"]["docs"],
           "weight": best, "weight_from": "this set's train split" if train else "SciFact train split",
           "hybrid_minus_best_single": round(nd["hybrid"] - max(nd["dense"], nd["bm25"]), 4),
           "train_ndcg_by_weight": train or None,
           "test_ndcg@10": {"dense": res["dense"]["ndcg@10"], "bm25": res["bm25"]["ndcg@10"],
                            "rrf": round(metrics(rrf(dense_r, lex_r), qrels)["ndcg@10"], 4),
                            "hybrid": res["hybrid"]["ndcg@10"]},
           "test_recall@100": {m: res[m]["recall@100"] for m in res},
           "ms_per_query": {m: res[m]["ms_per_query"] for m in res}}
    return out, best


def world(config: Path, embedder, weight: float) -> dict:
    from app.config import Cast, EternaConfig
    from app.evaluation.facts import load_fact_items
    from retrieval.index import LoreIndex
    from retrieval.rebuild import rebuild_index
    from retrieval.retriever import RetrieverSpec, make_retriever
    from retrieval.types import Scope

    cfg = EternaConfig.load(config)
    with tempfile.TemporaryDirectory() as tmp:
        rebuild_index(cfg.paths.corpus, Path(tmp) / "index", embedder, chunk_words=cfg.retrieval.chunk_words,
                      overlap_words=cfg.retrieval.overlap_words)
        lore = LoreIndex.open(Path(tmp) / "index", embedder)
        cast = Cast.load(cfg.paths.npcs, cfg.world)
        items = [it for it in load_fact_items(cfg.data_path("eval") / "facts.jsonl")]
        docs = lore.documents()
        items = [it for it in items if it["doc"] in docs and Scope(
            npc=it["npc"], kinds=cast.get(it["npc"]).kinds(), chapter=it["chapter"]).allows(docs[it["doc"]])]
        vecs = embedder.encode([it["question"] for it in items])
        out = {}
        for mode in ("dense", "bm25", "hybrid"):
            retriever = make_retriever(RetrieverSpec(mode=mode, hybrid_weight=weight))
            ranks = []
            for it, v in zip(items, vecs):
                npc = cast.get(it["npc"])
                scope = Scope(npc=npc.id, kinds=npc.kinds(), chapter=it["chapter"])
                hits = retriever.search(lore, it["question"], v, 20, scope)
                order = list(dict.fromkeys(h.chunk.doc for h in hits))
                ranks.append(order.index(it["doc"]) + 1 if it["doc"] in order else None)
            out[mode] = {"hit@1": round(float(np.mean([r == 1 for r in ranks])), 4),
                         "hit@4": round(float(np.mean([r is not None and r <= 4 for r in ranks])), 4),
                         "mrr": round(float(np.mean([1 / r if r else 0 for r in ranks])), 4)}
    return {"data": cfg.world.name, "questions": len(items), "weight": weight, **out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beir", default=str(REPO.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--worlds", nargs="*", default=[str(REPO / "configs" / f"{w}.yaml")
                                                    for w in ("eterna", "kestrel", "sealed")])
    ap.add_argument("--cache", help="keep the BEIR index cache here (default: a temporary folder)")
    ap.add_argument("--weight", type=float, help="skip the grid on SciFact's train split and use this weight "
                                                 "(0.5 is what the grid chose; see docs/benchmarks.md)")
    args = ap.parse_args()
    from retrieval.embeddings import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache) if args.cache else Path(tmp)
        result, weight = beir(Path(args.beir), embedder, cache, args.weight)
        print(json.dumps(result), flush=True)
        from app.evaluation.retrieval_eval import tune_weight
        from benchmarks.qa_sets import SETS

        for name, make in SETS.items():  # assembled from public data: the weight is chosen on each set's dev split
            folder = make(Path(tmp) / "sets")
            tuned = tune_weight(folder, embedder, "minilm", cache, split="dev")
            row, _ = beir(folder, embedder, cache, tuned["weight"])
            fixed, _ = beir(folder, embedder, cache, weight)
            print(json.dumps({**row, "weight_from": "this set's dev split", "dev_ndcg_by_weight":
                              tuned["ndcg@10_by_weight"], f"hybrid_at_scifact_weight_{weight}":
                              fixed["test_ndcg@10"]["hybrid"]}), flush=True)
    for w in args.worlds:
        print(json.dumps(world(Path(w), embedder, weight)), flush=True)


if __name__ == "__main__":
    main()
