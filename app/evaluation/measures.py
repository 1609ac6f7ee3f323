"""Retrieval measurements: hit rate of the gold document by fact question, and nDCG@10 (trec_eval)."""

from __future__ import annotations

import math

import numpy as np

from retrieval.index import LoreIndex
from retrieval.retriever import Retriever, RetrieverSpec, make_retriever
from retrieval.types import Hit


def rank_documents(hits: list[Hit], n: int) -> list[str]:
    """Documents in the order of their best chunk, at most n."""
    return list(dict.fromkeys(h.chunk.doc for h in hits))[:n]


def retrieval_report(index: LoreIndex, embedder, items: list[dict], cast, k: int = 4,
                     retriever: Retriever | None = None) -> dict:
    """Hit@1 / hit@k / MRR of the gold document for each fact item ({question, doc, npc, chapter}), in the asking
    NPC's scope, over the top 20 chunks of `retriever` (any registered mode, e.g. `config.retrieval.retriever()`;
    default: dense)."""
    retriever = retriever or make_retriever(RetrieverSpec(mode="dense"))
    vecs = embedder.encode([it["question"] for it in items])
    ranks = []
    for it, v in zip(items, vecs):
        npc = cast.get(it["npc"])
        hits = retriever.search(index, it["question"], v, 20, npc.scope(it["chapter"]))
        docs = rank_documents(hits, len(hits))
        ranks.append(docs.index(it["doc"]) + 1 if it["doc"] in docs else None)
    found = np.array([r is not None and r <= k for r in ranks])
    return {"n": len(items), "hit@1": round(float(np.mean([r == 1 for r in ranks])), 4),
            f"hit@{k}": round(float(found.mean()), 4),
            "mrr": round(float(np.mean([1.0 / r if r else 0.0 for r in ranks])), 4)}


def ndcg_at_10(ranked: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> float:
    """Mean nDCG@10 over the queries of `qrels` (trec_eval definition: gain rel, discount log2(rank + 1))."""
    scores = []
    for q, rels in qrels.items():
        got = ranked.get(q, [])[:10]
        dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(got))
        ideal = sorted(rels.values(), reverse=True)[:10]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        scores.append(dcg / idcg if idcg else 0.0)
    return float(np.mean(scores))


def paired_bootstrap(diff: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """The 95% interval of the mean of per-query differences between two systems, by a paired bootstrap over
    queries (`n` resamples)."""
    idx = np.random.default_rng(seed).integers(0, len(diff), (n, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
