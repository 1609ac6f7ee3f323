"""Retrieval quality and rebuild cost on BEIR SciFact (test split), printed as one JSON line.

Baseline, measured in the same run: the MTEB protocol (one embedding per document, title + text, exact search),
whose published nDCG@10 for all-MiniLM-L6-v2 is 0.6451. Eterna: the same documents through Eterna's own pipeline
(front-matter files -> section/sentence chunking -> FAISS generation), a document scored by its best chunk.
Rebuild cost: a full rebuild vs an incremental one after editing 1% of the documents (ratio).

    .venv/bin/python benchmarks/bench_retrieval.py [--data ../shared/data/scifact] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.evaluation.beir import write_as_lore  # noqa: E402
from app.evaluation.retrieval_eval import read_beir  # noqa: E402
from app.evaluation.measures import ndcg_at_10, rank_documents  # noqa: E402
from retrieval.embeddings import SentenceTransformerEmbedder  # noqa: E402
from retrieval.index import LoreIndex  # noqa: E402
from retrieval.rebuild import rebuild_index  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    ap.add_argument("--limit", type=int, default=0, help="use only the first N test queries (the corpus stays whole)")
    args = ap.parse_args()
    corpus, queries, qrels = read_beir(Path(args.data), "test", args.limit)
    qids = list(qrels)
    emb = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
    qv = emb.encode([queries[q] for q in qids])  # (Q, dim)

    # baseline: MTEB protocol, one vector per document
    t0 = time.perf_counter()
    dv = emb.encode([f"{d['title']} {d['text']}".strip() for d in corpus])  # (D, dim)
    base_secs = time.perf_counter() - t0
    top = np.argsort(-(qv @ dv.T), axis=1)[:, :100]
    base_ranked = {q: [corpus[i]["_id"] for i in row] for q, row in zip(qids, top)}

    with tempfile.TemporaryDirectory() as tmp:
        lore = write_as_lore(corpus, Path(tmp) / "lore")
        full = rebuild_index(lore, Path(tmp) / "index", emb)
        index = LoreIndex.open(Path(tmp) / "index", emb)
        ranked = {q: rank_documents(index.search_vector(v, 300), 100) for q, v in zip(qids, qv)}
        step = max(1, len(corpus) // 100)
        for d in corpus[::step]:  # edit 1% of the documents
            p = lore / f"{d['_id']}.md"
            p.write_text(p.read_text(encoding="utf-8") + "\nRevised.\n", encoding="utf-8")
        incr = rebuild_index(lore, Path(tmp) / "index", emb)

    print(json.dumps({
        "benchmark": "retrieval_scifact_test", "queries": len(qids), "documents": len(corpus),
        "baseline_mteb_protocol_ndcg@10": round(ndcg_at_10(base_ranked, qrels), 4),
        "published_ndcg@10": 0.6451,
        "eterna_chunked_ndcg@10": round(ndcg_at_10(ranked, qrels), 4),
        "chunks": full.chunks, "baseline_embed_seconds": round(base_secs, 1),
        "full_rebuild_seconds": full.seconds, "incremental_rebuild_seconds": incr.seconds,
        "incremental_embedded": incr.embedded, "incremental_speedup": round(full.seconds / incr.seconds, 1),
    }))


if __name__ == "__main__":
    main()
