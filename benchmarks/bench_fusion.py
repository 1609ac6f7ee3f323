"""Label-free fusion of dense and BM25 candidates: which per-query weighting stays within 0.005 nDCG@10 of the
better single retriever on every set (issue 19, item 5). One JSON line per data set: each method's nDCG@10 on the
split used for choosing (dev; SciFact: 300 train queries) and on the test split.

    .venv/bin/python benchmarks/bench_fusion.py [--candidates 20] [--cache DIR] [--sets DIR] [--only SET ...]

Sets: SciFact (../shared/data/scifact), and the two built by benchmarks/qa_sets.py (Alpaca answers, persona
grounding) in a temporary folder. Methods: dense, bm25, RRF (k=60), `fixed` (today's convex mix of min-max scores,
weight 0.5), and per-query weights from each list's own confidence: `z` (top score's z-score in its list), `gap`
(top-1 minus top-2 over the list's range), `top5` (top-1 over the top-5 mean), the same on z-normalised scores
(`zn_*`), and agreement between the lists (`agree_a`: the dense weight falls from 1 to 0.5 with the share of
BM25's top 5 that dense's top 20 confirms; `agree_b`: symmetric). Added for the second round: `m3s` (each list
normalised by its mean ± 3 sd, then the 0.5 mix), `mnz` (CombMNZ: the sum of min-max scores times the number of
lists holding the document), `gate` (the single retriever alone when its top-score z exceeds the other's twice,
otherwise the 0.5 mix), and `pseudo` / `pseudo_m3s`: one weight per corpus, chosen from pseudo-queries made from
the corpus itself (`pseudo_weight`: a sentence taken out of a document is the query, the rest of the document its
one relevant passage; no labels), kept at 0.5 unless the best weight beats 0.5 on them by a paired bootstrap.
Each method's test line also has the paired-bootstrap 95% interval of its per-query nDCG@10 minus the better single
retriever's (non-inferior when the lower bound is above -0.005). Document vectors and BM25 are cached under
`--cache` (default: a temporary folder), as `eterna eval retrieval` caches them; writes nothing else.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def candidates(folder: Path, splits: tuple[str, str], embedder, limit: dict, cache: Path) -> dict:
    """{split: (rows [(query id, dense top 100 [(doc, cosine)], BM25 top 100 [(doc, score)])], qrels)}, and
    "corpus": (texts, vectors, BM25 index) for the pseudo-queries."""
    from app.evaluation.retrieval_eval import beir_index, read_beir

    out = {}
    for split in splits:
        corpus, queries, qrels = read_beir(folder, split)
        qrels = dict(list(qrels.items())[: limit.get(split) or None])
        index, _, _ = beir_index(folder, corpus, embedder, EMBEDDER, cache, {"dense", "bm25"})
        ids = [d["_id"] for d in corpus]
        out["corpus"] = ([f"{d['title']} {d['text']}".strip() for d in corpus], index.vectors, index.lexical)
        qids = list(qrels)
        qv = np.asarray(embedder.encode([queries[q] for q in qids]), dtype=np.float32)
        rows = []
        for n, q in enumerate(qids):
            s = index.vectors @ qv[n]
            top = np.argsort(-s)[:100]
            rows.append((q, [(ids[i], float(s[i])) for i in top],
                         [(ids[i], float(sc)) for i, sc in index.lexical.search(queries[q], 100)]))
        out[split] = (rows, qrels)
    return out


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def pseudo_queries(texts: list[str], n: int = 300, seed: int = 0) -> list[tuple[int, str, str]]:
    """(document row, query, the document without it): a sentence of 4+ words taken out of a document of 2+ such
    sentences (the inverse cloze task), for up to n documents drawn at random."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(texts)):
        sents = [x for x in _SENTENCE.split(texts[i]) if len(x.split()) >= 4]
        if len(sents) >= 2:
            j = int(rng.integers(len(sents)))
            out.append((int(i), sents[j], " ".join(x for m, x in enumerate(sents) if m != j)))
            if len(out) >= n:
                break
    return out


def pseudo_weight(texts, vectors, embedder, c: int, norm: str = "minmax", n: int = 300,
                  grid=tuple(w / 10 for w in range(11)), base: float = 0.5) -> tuple[float, dict]:
    """One dense weight for a corpus, from its own pseudo-queries (no labels): the weight of the grid with the best
    MRR@10 of each query's source document, in a corpus where that document lost the sentence; `base` unless the
    best beats it in a paired bootstrap (lower 95% bound of the MRR difference above 0). (weight, evidence)."""
    from app.evaluation.measures import paired_bootstrap
    from retrieval.lexical import LexicalIndex

    picks = pseudo_queries(texts, n)
    if len(picks) < 30:
        return base, {"pseudo_queries": len(picks)}
    texts, vectors = list(texts), np.array(vectors, copy=True)
    rest = np.asarray(embedder.encode([r for _, _, r in picks]), dtype=np.float32)
    for (i, _, r), v in zip(picks, rest):
        texts[i], vectors[i] = r, v
    lexical = LexicalIndex.build(texts)
    qv = np.asarray(embedder.encode([q for _, q, _ in picks]), dtype=np.float32)
    runs = []
    for (i, q, _), v in zip(picks, qv):
        s = vectors @ v
        top = np.argsort(-s)[:c]
        runs.append((i, [(int(t), float(s[t])) for t in top], [(int(t), float(x)) for t, x in lexical.search(q, c)]))
    rr = {w: np.array([_rr(_mix(d, lx, w, norm), i) for i, d, lx in runs]) for w in grid}
    best = max(grid, key=lambda w: (rr[w].mean(), -abs(w - base)))
    low = paired_bootstrap(rr[best] - rr[base])[0]
    chosen = best if low > 0 else base
    return chosen, {"pseudo_queries": len(picks), "best": best, "low_vs_base": round(low, 4),
                    "mrr": {w: round(float(rr[w].mean()), 4) for w in grid}}


def _rr(ranked: list, target) -> float:
    return 1.0 / (ranked.index(target) + 1) if target in ranked[:10] else 0.0


def _mix(dense, lex, w: float, norm: str = "minmax") -> list:
    nd, nl = (_m3s(dense), _m3s(lex)) if norm == "m3s" else (_minmax(dense), _minmax(lex))
    md, ml = min(nd.values(), default=0.0), min(nl.values(), default=0.0)
    ids = list(dict.fromkeys([k for k, _ in dense] + [k for k, _ in lex]))
    return sorted(ids, key=lambda k: -(w * nd.get(k, md) + (1 - w) * nl.get(k, ml)))


def _m3s(pairs):
    """Scores mapped so the list's mean - 3 sd is 0 and mean + 3 sd is 1 (distribution-based normalisation)."""
    if not pairs:
        return {}
    v = np.array([s for _, s in pairs])
    lo, span = v.mean() - 3 * v.std(), 6 * v.std() + 1e-9
    return {k: (s - lo) / span for k, s in pairs}


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


def fuse(dense, lex, c: int, method: str, corpus_weight: dict | None = None) -> list[str]:
    dense, lex = dense[:c], lex[:c]
    if method in ("dense", "bm25"):
        return [k for k, _ in (dense if method == "dense" else lex)]
    if method == "rrf":
        sc: dict = {}
        for lst in (dense, lex):
            for r, (k, _) in enumerate(lst):
                sc[k] = sc.get(k, 0.0) + 1 / (61 + r)
        return sorted(sc, key=lambda k: -sc[k])
    if method == "m3s":
        return _mix(dense, lex, 0.5, "m3s")
    if method.startswith("pseudo"):
        return _mix(dense, lex, corpus_weight[method], "m3s" if method == "pseudo_m3s" else "minmax")
    if method == "mnz":
        nd, nl = _minmax(dense), _minmax(lex)
        ids = list(dict.fromkeys([k for k, _ in dense] + [k for k, _ in lex]))
        return sorted(ids, key=lambda k: -((nd.get(k, 0.0) + nl.get(k, 0.0)) * ((k in nd) + (k in nl))))
    if method == "gate":
        cd, cl = (confidence(dense, "z") if dense else 0.0), (confidence(lex, "z") if lex else 0.0)
        if cd > 2 * cl or not lex:
            return [k for k, _ in dense]
        if cl > 2 * cd:
            return [k for k, _ in lex]
        return _mix(dense, lex, 0.5)
    w = weight(method, dense, lex)
    nd, nl = (_z(dense), _z(lex)) if method.startswith("zn_") else (_minmax(dense), _minmax(lex))
    md, ml = min(nd.values(), default=0.0), min(nl.values(), default=0.0)
    ids = list(dict.fromkeys([k for k, _ in dense] + [k for k, _ in lex]))
    return sorted(ids, key=lambda k: -(w * nd.get(k, md) + (1 - w) * nl.get(k, ml)))


METHODS = ("dense", "bm25", "rrf", "fixed", "z", "gap", "top5", "zn_fixed", "zn_z", "zn_gap", "agree_a", "agree_b",
           "m3s", "mnz", "gate", "pseudo", "pseudo_m3s")
EMBEDDER = "builtin:all-minilm-l6-v2"


def main() -> None:
    from app.evaluation.measures import ndcg_at_10, paired_bootstrap
    from retrieval.embeddings import SentenceTransformerEmbedder

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--candidates", type=int, default=20, help="candidates per retriever (the engine's default)")
    ap.add_argument("--cache", type=Path, help="cache folder for document vectors and BM25 (default: temporary)")
    ap.add_argument("--sets", type=Path, help="folder where benchmarks/qa_sets.py wrote its sets (default: built)")
    ap.add_argument("--only", nargs="+", help="these sets only (alpaca-answers, persona-grounding, scifact)")
    args = ap.parse_args()
    embedder = SentenceTransformerEmbedder(EMBEDDER)
    with tempfile.TemporaryDirectory() as tmp:
        sets_dir = args.sets or Path(tmp) / "sets"
        if args.sets is None:
            subprocess.run([sys.executable, str(REPO / "benchmarks" / "qa_sets.py"), str(sets_dir)], check=True,
                           capture_output=True)
        cache = args.cache or Path(tmp) / "cache"
        sets = [("alpaca-answers", sets_dir / "alpaca-answers", ("dev", "test"), {}),
                ("persona-grounding", sets_dir / "persona-grounding", ("dev", "test"), {}),
                ("scifact", REPO.parent / "shared" / "data" / "scifact", ("train", "test"), {"train": 300})]
        for name, folder, splits, limit in sets:
            if not folder.is_dir() or (args.only and name not in args.only):
                continue
            data = candidates(folder, splits, embedder, limit, cache)
            texts, vectors, _ = data["corpus"]
            chosen, evidence = {}, {}
            for m, norm in (("pseudo", "minmax"), ("pseudo_m3s", "m3s")):
                chosen[m], evidence[m] = pseudo_weight(texts, vectors, embedder, args.candidates, norm)
            per_query = {m: {split: _per_query({q: fuse(d, lx, args.candidates, m, chosen)
                                                for q, d, lx in data[split][0]}, data[split][1], ndcg_at_10)
                             for split in splits} for m in METHODS}
            res = {m: {split: round(float(v.mean()), 4) for split, v in per_query[m].items()} for m in METHODS}
            single = max(("dense", "bm25"), key=lambda m: per_query[m]["test"].mean())
            ci = {m: [round(x, 4) for x in paired_bootstrap(per_query[m]["test"] - per_query[single]["test"])]
                  for m in METHODS[2:]}
            print(json.dumps({"set": name, "candidates": args.candidates, "ndcg@10": res,
                              "pseudo_weight": chosen, "pseudo_evidence": evidence, "better_single": single,
                              "test_minus_better_single_95ci": ci,
                              "within_0.005_of_best_single_on_test": [
                                  m for m in METHODS[2:] if res[m]["test"] >= res[single]["test"] - 0.005],
                              "non_inferior_by_bootstrap": [m for m in METHODS[2:] if ci[m][0] > -0.005]}),
                  flush=True)


def _per_query(ranked: dict, qrels: dict, ndcg) -> np.ndarray:
    """nDCG@10 of each query of `qrels`, in order."""
    return np.array([ndcg(ranked, {q: rels}) for q, rels in qrels.items()])


if __name__ == "__main__":
    main()
