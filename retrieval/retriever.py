"""The retriever seam: one small interface that the engine, the router's lore signal, the evaluation and the
LlamaIndex adapter all search through, so dense, BM25 and hybrid search (and a reranking stage) are
interchangeable by config.

    retriever = make_retriever(RetrieverSpec(mode="hybrid", rerank="sentences"), embedder)
    hits = retriever.search(index, "Where is the crypt gate?", qvec, k=4, scope=Scope(npc="guard", chapter=1))

A retriever is stateless over the index (the engine swaps index generations between turns); every implementation
returns `Hit`s whose `score` is the dense cosine of the chunk, so score thresholds mean the same under every mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from retrieval.index import LoreIndex
from retrieval.registry import Registry
from retrieval.types import Hit, Scope


@dataclass(frozen=True)
class RetrieverSpec:
    mode: str = "dense"  # dense | bm25 | hybrid
    hybrid_weight: float = 0.5  # weight of the dense scores in the fusion
    candidates: int = 20  # candidates per retriever before fusion or reranking
    rerank: str = "none"  # none | sentences | cross-encoder
    rerank_model: str | None = None  # a local sentence-transformers CrossEncoder folder (rerank: cross-encoder)
    rerank_weight: float = 0.5  # weight of the reranker's score against the first stage's (min-max normalised)


class Retriever(Protocol):
    def search(self, index: LoreIndex, text: str, vector: np.ndarray, k: int,
               scope: Scope | None = None) -> list[Hit]:
        """Top-k chunks for a query (its text and its (dim,) normalised embedding) within the scope."""
        ...


class DenseRetriever:
    def search(self, index, text, vector, k, scope=None):
        return index.search_vector(vector, k, scope)


class LexicalRetriever:
    """BM25 ranking; each hit still carries its dense cosine as the score (for thresholds)."""

    def search(self, index, text, vector, k, scope=None):
        if index.lexical is None:  # a generation from before BM25: dense is the honest fallback
            return index.search_vector(vector, k, scope)
        return [Hit(index.chunks[i], index.cosine(i, vector), rank)
                for rank, (i, _s) in enumerate(index.search_lexical(text, k, scope))]


class HybridRetriever:
    def __init__(self, weight: float = 0.5, candidates: int = 20):
        self.weight, self.candidates = weight, candidates

    def search(self, index, text, vector, k, scope=None):
        return index.search_hybrid(text, vector, k, scope, weight=self.weight, candidates=self.candidates)


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class SentenceReranker:
    """Second pass with the embedder itself over more candidates: a chunk's score becomes the best cosine of its
    sentences (late interaction at sentence level), mixed with the first stage's rank score. Cheap: sentence
    vectors are cached per chunk hash."""

    def __init__(self, embedder, weight: float = 0.5):
        self.embedder, self.weight = embedder, weight
        self._cache: dict[str, np.ndarray] = {}

    def scores(self, text: str, vector: np.ndarray, hits: list[Hit]) -> np.ndarray:
        todo = [h.chunk for h in hits if h.chunk.hash not in self._cache]
        if todo:
            parts = [[s for s in _SENTENCE.split(c.text) if len(s.split()) >= 3] or [c.text] for c in todo]
            vecs = self.embedder.encode([s for p in parts for s in p])  # (S, dim)
            i = 0
            for c, p in zip(todo, parts):
                self._cache[c.hash] = vecs[i:i + len(p)]
                i += len(p)
            if len(self._cache) > 50_000:
                self._cache.clear()
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        return np.array([float((self._cache[h.chunk.hash] @ q).max()) for h in hits])


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder (nothing downloads)."""

    def __init__(self, model: str):
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model, device="cpu", local_files_only=True)

    def scores(self, text: str, vector: np.ndarray, hits: list[Hit]) -> np.ndarray:
        pairs = [(text, f"{h.chunk.title}: {h.chunk.text}") for h in hits]
        return np.asarray(self.model.predict(pairs, show_progress_bar=False), dtype=np.float64)


class Reranked:
    """First stage over `candidates` hits, then a reranker's scores mixed with the first-stage rank
    (min-max normalised, convex weight); the hits keep their dense cosine as `score`."""

    def __init__(self, first: Retriever, reranker, candidates: int = 20, weight: float = 0.5):
        self.first, self.reranker, self.candidates, self.weight = first, reranker, candidates, weight

    def search(self, index, text, vector, k, scope=None):
        hits = self.first.search(index, text, vector, max(k, self.candidates), scope)
        if len(hits) <= 1:
            return hits[:k]
        r = self.reranker.scores(text, vector, hits)
        r = (r - r.min()) / (r.max() - r.min()) if r.max() > r.min() else np.ones_like(r)
        first = 1.0 - np.arange(len(hits)) / (len(hits) - 1)  # rank-based: modes differ in score scales
        mixed = self.weight * r + (1 - self.weight) * first
        order = np.argsort(-mixed, kind="stable")[:k]
        return [Hit(hits[i].chunk, hits[i].score, rank) for rank, i in enumerate(order)]


MODES: Registry = Registry("retrieval mode")
MODES.add("dense", lambda spec: DenseRetriever())
MODES.add("bm25", lambda spec: LexicalRetriever())
MODES.add("hybrid", lambda spec: HybridRetriever(spec.hybrid_weight, spec.candidates))

RERANKERS: Registry = Registry("reranker")
RERANKERS.add("sentences", lambda spec, embedder: SentenceReranker(embedder))
RERANKERS.add("cross-encoder", lambda spec, embedder: CrossEncoderReranker(spec.rerank_model))


def make_retriever(spec: RetrieverSpec, embedder=None) -> Retriever:
    first = MODES.lookup(spec.mode, "retrieval.mode: ")(spec)
    if spec.rerank == "none":
        return first
    reranker = RERANKERS.lookup(spec.rerank, "retrieval.rerank: ")(spec, embedder)
    return Reranked(first, reranker, spec.candidates, spec.rerank_weight)
