"""A chunk that also ranks by its best sentence (`retrieval.sentence_weight`) on public data, measured in one run.

    .venv/bin/python benchmarks/bench_sentences.py [--beir ../shared/data/scifact] [--weights 0 0.3 0.5]
                                                   [--cache DIR] [--limit N]

The BEIR corpus becomes an in-memory index, one chunk per document (as `eterna eval retrieval` builds it), plus one
vector per sentence of each document (`retrieval.index.sentence_texts`, float16, as a generation stores them). For
dense and hybrid (weight 0.5, 100 candidates) it prints one JSON line per sentence weight: nDCG@10 and recall@100 on
the test split, and the paired-bootstrap 95% interval (2,000 resamples over queries) of the per-query nDCG@10
difference to weight 0 (chunks alone) measured in the same run. Nothing is tuned on the test split: the weights are
the engine's (0.3, chosen on the development worlds' fact questions) and two neighbours.

Writes only under a temporary folder (the vector cache) unless --cache is given.
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

from app.evaluation.measures import ndcg_at_10, paired_bootstrap  # noqa: E402
from app.evaluation.retrieval_eval import beir_index, metrics, read_beir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beir", type=Path, default=REPO.parent / "shared" / "data" / "scifact")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 0.5])
    ap.add_argument("--cache", type=Path, help="keep the vectors here (default: a temporary folder)")
    ap.add_argument("--limit", type=int, default=0, help="first N test queries only (a quick check)")
    args = ap.parse_args(argv)
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.retriever import RetrieverSpec, make_retriever

    embedder = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.cache or Path(tmp)
        corpus, queries, qrels = read_beir(args.beir, "test", args.limit)
        index, built, _ = beir_index(args.beir, corpus, embedder, "minilm", root, {"dense", "bm25"}, sentences=True)
        srows = index.sentences[1]
        qids = list(qrels)
        qvecs = np.asarray(embedder.encode([queries[q] for q in qids]), dtype=np.float32)
        for mode in ("dense", "hybrid"):
            base = None
            for w in [0.0, *[w for w in args.weights if w != 0.0]]:
                r = make_retriever(RetrieverSpec(mode=mode, hybrid_weight=0.5, candidates=100, sentence_weight=w))
                t0 = time.perf_counter()
                ranked = {q: [h.chunk.doc for h in r.search(index, queries[q], qvecs[n], 100)]
                          for n, q in enumerate(qids)}
                ms = (time.perf_counter() - t0) * 1000 / max(1, len(qids))
                per = np.array([ndcg_at_10(ranked, {q: qrels[q]}) for q in qids])
                base = per if base is None else base
                m = metrics(ranked, qrels)
                print(json.dumps({"set": args.beir.name, "mode": mode, "sentence_weight": w, "queries": len(qids),
                                  "docs": len(corpus), "sentences": len(srows), "ndcg@10": m["ndcg@10"],
                                  "recall@100": m["recall@100"], "diff_vs_0": round(float((per - base).mean()), 4),
                                  "diff_95": [round(x, 4) for x in paired_bootstrap(per - base)],
                                  "ms_per_query": round(ms, 2), "embed_s": built}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
