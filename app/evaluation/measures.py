"""Measurements over the labelled eval sets: router accuracy/confusion and retrieval hit rate by fact question."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from app.router import LABELS, Router
from retrieval.fileio import read_jsonl
from retrieval.index import LoreIndex
from retrieval.types import Hit, Scope


def rank_documents(hits: list[Hit], n: int) -> list[str]:
    """Documents in the order of their best chunk, at most n."""
    return list(dict.fromkeys(h.chunk.doc for h in hits))[:n]


def router_report(router: Router, index: LoreIndex, path: Path) -> dict:
    items = [obj for _, obj in read_jsonl(path, ("text", "label"))]
    vecs = router.embedder.encode([it["text"] for it in items])  # (N, dim)
    confusion = {gold: dict.fromkeys(LABELS, 0) for gold in LABELS}
    errors = []
    for it, v in zip(items, vecs):
        top = index.search_vector(v, 1)
        route = router.route(it["text"], v, top[0].score if top else 0.0)
        confusion[it["label"]][route.label] += 1
        if route.label != it["label"]:
            errors.append({"text": it["text"], "gold": it["label"], "got": route.label, "why": route.reason})
    correct = sum(confusion[g][g] for g in LABELS)
    recall = {g: round(confusion[g][g] / max(1, sum(confusion[g].values())), 3) for g in LABELS}
    return {"n": len(items), "accuracy": round(correct / max(1, len(items)), 4), "recall": recall,
            "confusion": confusion, "errors": errors}


def retrieval_report(index: LoreIndex, embedder, paths: list[Path], cast, k: int = 4) -> dict:
    """Hit@1 / hit@k / MRR of the gold document for each fact question, in the asking NPC's scope."""
    items = [obj for p in paths for _, obj in read_jsonl(p, ("question", "doc", "npc", "chapter"))]
    vecs = embedder.encode([it["question"] for it in items])
    ranks = []
    for it, v in zip(items, vecs):
        npc = cast.get(it["npc"])
        hits = index.search_vector(v, 20, Scope(npc=npc.id, kinds=npc.kinds(), chapter=it["chapter"]))
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
