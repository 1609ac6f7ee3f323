"""Label-free fusion of dense and BM25 candidates: which per-query weighting stays within 0.005 nDCG@10 of the
better single retriever on every set (issue 19, item 5). One JSON line per data set: each method's nDCG@10 on the
split used for choosing (dev; SciFact: 300 train queries) and on the test split.

    .venv/bin/python benchmarks/bench_fusion.py [--candidates 20]

Sets: SciFact (../shared/data/scifact), and the two built by benchmarks/qa_sets.py (Alpaca answers, persona
grounding) in a temporary folder. Methods: dense, bm25, RRF (k=60), `fixed` (today's convex mix of min-max scores,
weight 0.5), and per-query weights from each list's own confidence: `z` (top score's z-score in its list), `gap`
(top-1 minus top-2 over the list's range), `top5` (top-1 over the top-5 mean), the same on z-normalised scores
(`zn_*`), and agreement between the lists (`agree_a`: the dense weight falls from 1 to 0.5 with the share of
BM25's top 5 that dense's top 20 confirms; `agree_b`: symmetric). Writes only under a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def candidates(folder: Path, splits: tuple[str, str], embedder, limit: dict) -> dict:
    from app.evaluation.retrieval_eval import read_beir
    from retrieval.lexical import LexicalIndex

    out, vectors, lexical = {}, None, None
    for split in splits:
        corpus, queries, qrels = read_beir(folder, split)
        qrels = dict(list(qrels.items())[: limit.get(split) or None])
        ids = [d["_id"] for d in corpus]
        if vectors is None:
            texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
            vectors, lexical = np.asarray(embedder.encode(texts), dtype=np.float32), LexicalIndex.build(texts)
        qids = list(qrels)
        qv = np.asarray(embedder.encode([queries[q] for q in qids]), dtype=np.float32)
        rows = []
        for n, q in enumerate(qids):
            s = vectors @ qv[n]
            top = np.argsort(-s)[:100]
            rows.append((q, [(ids[i], float(s[i])) for i in top],
                         [(ids[i], float(sc)) for i, sc in lexical.search(queries[q], 100)]))
        out[split] = (rows, qrels)
    return out


def _minmax(pairs):
    if not pairs:
        return {}
    v = np.array([s for _, s in pairs])
    lo, hi = v.min(), v.max()
    return {k: (s - lo) / (hi - lo) if hi > lo else 1.0 for k, s in pairs}


def _z(pairs):
    if not pairs:
        return {}
    v = np.array([s for _, s in pairs])
    return {k: (s - v.mean()) / (v.std() + 1e-9) for k, s in pairs}


def confidence(pairs, how: str) -> float:
    v = np.array([s for _, s in pairs])
    if len(v) < 3:
        return 1.0
    return {"gap": (v[0] - v[1]) / (v[0] - v[-1] + 1e-9), "z": (v[0] - v.mean()) / (v.std() + 1e-9),
            "top5": (v[0] - v[:5].mean()) / (v[0] - v[-1] + 1e-9)}[how]


def weight(method: str, dense, lex) -> float:
    """The dense list's weight for this query."""
    if method == "fixed" or method == "zn_fixed":
        return 0.5
    if method.startswith("agree"):
        td, tl = {k for k, _ in dense[:20]}, {k for k, _ in lex[:20]}
        al = len({k for k, _ in lex[:5]} & td) / 5  # BM25's top 5 that dense confirms
        ad = len({k for k, _ in dense[:5]} & tl) / 5
        return {"agree_a": 1 - 0.5 * al, "agree_b": 0.5 + 0.5 * (ad - al)}[method]
    how = method.removeprefix("zn_")
    cd, cl = confidence(dense, how), confidence(lex, how)
    return cd / (cd + cl) if cd + cl > 0 else 0.5


def fuse(dense, lex, c: int, method: str) -> list[str]:
    dense, lex = dense[:c], lex[:c]
    if method in ("dense", "bm25"):
        return [k for k, _ in (dense if method == "dense" else lex)]
    if method == "rrf":
        sc: dict = {}
        for lst in (dense, lex):
            for r, (k, _) in enumerate(lst):
                sc[k] = sc.get(k, 0.0) + 1 / (61 + r)
        return sorted(sc, key=lambda k: -sc[k])
    w = weight(method, dense, lex)
    nd, nl = (_z(dense), _z(lex)) if method.startswith("zn_") else (_minmax(dense), _minmax(lex))
    md, ml = min(nd.values(), default=0.0), min(nl.values(), default=0.0)
    ids = list(dict.fromkeys([k for k, _ in dense] + [k for k, _ in lex]))
    return sorted(ids, key=lambda k: -(w * nd.get(k, md) + (1 - w) * nl.get(k, ml)))


METHODS = ("dense", "bm25", "rrf", "fixed", "z", "gap", "top5", "zn_fixed", "zn_z", "zn_gap", "agree_a", "agree_b")


def main() -> None:
    from app.evaluation.retrieval_eval import metrics
    from retrieval.embeddings import SentenceTransformerEmbedder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=20, help="candidates per retriever (the engine's default)")
    args = ap.parse_args()
    embedder = SentenceTransformerEmbedder("builtin:all-minilm-l6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "qa_sets.py"), tmp], check=True,
                       capture_output=True)
        sets = [("alpaca-answers", Path(tmp) / "alpaca-answers", ("dev", "test"), {}),
                ("persona-grounding", Path(tmp) / "persona-grounding", ("dev", "test"), {}),
                ("scifact", REPO.parent / "shared" / "data" / "scifact", ("train", "test"), {"train": 300})]
        for name, folder, splits, limit in sets:
            if not folder.is_dir():
                continue
            data = candidates(folder, splits, embedder, limit)
            res = {m: {split: metrics({q: fuse(d, lx, args.candidates, m) for q, d, lx in data[split][0]},
                                      data[split][1])["ndcg@10"] for split in splits} for m in METHODS}
            best = max(res["dense"]["test"], res["bm25"]["test"])
            print(json.dumps({"set": name, "candidates": args.candidates, "ndcg@10": res,
                              "within_0.005_of_best_single_on_test": [m for m in METHODS[2:]
                                                                       if res[m]["test"] >= best - 0.005]}),
                  flush=True)


if __name__ == "__main__":
    main()
